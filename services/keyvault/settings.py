"""keyvault's settings, read once at start-up from ``BYOM_*`` variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.keyvault.cipher import Keyring
from services.keyvault.errors import KeyringInvalid
from shared.config import ServiceSettings


class Settings(ServiceSettings):
    """Where the keyring comes from, and who may read keys."""

    # Validation errors would otherwise print the raw input, keyring included.
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    # The keyring JSON itself, or the path of a file holding it (a mounted Kubernetes Secret).
    keyring: SecretStr | None = None
    keyring_file: Path | None = None
    # Services whose credentials may read a plain key from the internal route.
    key_readers: frozenset[str] = frozenset({"catalog", "proxy"})
    provider_timeout_seconds: float = Field(default=15.0, gt=0)

    def load_keyring(self) -> Keyring:
        """The keyring, or KeyringInvalid saying exactly what is wrong with it."""
        inline = self.keyring.get_secret_value().strip() if self.keyring is not None else ""
        if not inline and self.keyring_file is None:
            raise KeyringInvalid(
                "no keyring: set BYOM_KEYRING to the keyring JSON, or BYOM_KEYRING_FILE to "
                'the path of a file holding it ({"active": ..., "keys": {...}, '
                '"fingerprint_key": ...})'
            )

        if inline and self.keyring_file is not None:
            raise KeyringInvalid("both BYOM_KEYRING and BYOM_KEYRING_FILE are set; keep one")

        source, text = "BYOM_KEYRING", inline
        if self.keyring_file is not None:
            source = f"BYOM_KEYRING_FILE ({self.keyring_file})"
            text = _read(self.keyring_file)

        try:
            return Keyring.from_json(text)
        except KeyringInvalid as error:
            raise KeyringInvalid(f"{source}: {error}") from None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise KeyringInvalid(f"cannot read the keyring file {path}: {reason}") from None
