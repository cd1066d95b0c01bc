"""keyvault's settings, read once at start-up from ``BYOM_*`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.keyvault.cipher import Keyring
from services.keyvault.errors import KeyringInvalid
from shared.config import ServiceSettings

_MIN_OPERATOR_TOKEN_LENGTH: Final = 24
_PLACEHOLDERS: Final = frozenset({"changeme", "change-me", "secret", "placeholder", "operator"})


class Settings(ServiceSettings):
    """Where the keyring comes from, who may read keys, and who may rewrap them."""

    # Validation errors would otherwise print the raw input, keyring included.
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    # The keyring JSON itself, or the path of a file holding it (a mounted Kubernetes Secret).
    keyring: SecretStr | None = None
    keyring_file: Path | None = None
    # Services whose credentials may read a plain key from the internal route.
    key_readers: frozenset[str] = frozenset({"catalog", "proxy"})
    provider_timeout_seconds: float = Field(default=15.0, gt=0)
    # Hosts (names or addresses, comma-separated) allowed although they are loopback or
    # link-local, such as a model server on the same machine.
    allowed_provider_hosts: str = ""
    # The install operator's token; it alone may start a rewrap over HTTP. Empty (the
    # default) turns that route off, leaving the rewrap command.
    operator_token: SecretStr = SecretStr("")

    @model_validator(mode="after")
    def _refuse_weak_operator_token(self) -> Settings:
        token = self.operator_token.get_secret_value()
        if token and (token.lower() in _PLACEHOLDERS or len(token) < _MIN_OPERATOR_TOKEN_LENGTH):
            raise ValueError(
                "BYOM_OPERATOR_TOKEN must be empty or a random value of at least "
                f"{_MIN_OPERATOR_TOKEN_LENGTH} characters"
            )

        return self

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
