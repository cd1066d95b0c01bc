"""Envelope encryption of provider keys under a versioned keyring.

Each secret gets a fresh random 256-bit data key. The provider key is encrypted with it
(AES-256-GCM, random 96-bit nonce) with associated data naming the workspace, the
connection and the secret version, so a ciphertext copied onto another row does not
decrypt. The data key is in turn encrypted ("wrapped") with AES-256-GCM under the
keyring's active key encryption key, with associated data naming the keyring version and
the same owner. The keyring lives outside the database (an environment variable or a
mounted Kubernetes Secret), so a copy of the database alone reveals no key.

A sealed secret records which keyring version wrapped its data key, so older entries keep
decrypting after the keyring gains a newer active one; :meth:`EnvelopeCipher.rewrap` moves
a secret to the active entry without touching its ciphertext.

Destroying the wrapped data key makes the ciphertext unreadable for good (crypto-shredding)
as far as the live database goes. A database backup taken earlier still holds the wrapped
key, so shredding reaches backups only as they age out of retention.

Python cannot reliably wipe bytes from memory: data keys and plain provider keys live only
for the duration of one call and are never logged or returned in any printable form.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final, NoReturn

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.keyvault.errors import KeyringInvalid, SecretUnreadable
from shared.secrets import ProviderKey

KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
_MIN_FINGERPRINT_KEY_BYTES: Final = 32
_VERSION_PATTERN: Final = re.compile(r"[A-Za-z0-9._-]{1,20}")
# Purposes keep the two uses of AES-GCM apart: a data key can never pass for a secret.
_CIPHERTEXT_PURPOSE: Final = "byom-keyvault/provider-key/v1"
_WRAP_PURPOSE: Final = "byom-keyvault/data-key/v1"


class Keyring:
    """Versioned key encryption keys and the fingerprint key; never prints a key."""

    __slots__ = ("_active", "_fingerprint_key", "_keys")

    def __init__(self, keys: Mapping[str, bytes], *, active: str, fingerprint_key: bytes) -> None:
        if not keys:
            raise KeyringInvalid("the keyring has no keys")

        for version, key in keys.items():
            _check_version(version)
            if len(key) != KEY_BYTES:
                raise KeyringInvalid(
                    f"keyring entry {version!r} is {len(key)} bytes long; "
                    f"AES-256 needs exactly {KEY_BYTES}"
                )

        if active not in keys:
            known = ", ".join(sorted(keys))
            raise KeyringInvalid(f"the active version {active!r} is not in the keyring ({known})")

        if len(fingerprint_key) < _MIN_FINGERPRINT_KEY_BYTES:
            raise KeyringInvalid(
                f"the fingerprint key must be at least {_MIN_FINGERPRINT_KEY_BYTES} bytes long"
            )

        # One key, one purpose: a fingerprint must reveal nothing about a wrapping key.
        if fingerprint_key in keys.values():
            raise KeyringInvalid("the fingerprint key must differ from every keyring entry")

        self._keys = dict(keys)
        self._active = active
        self._fingerprint_key = fingerprint_key

    @classmethod
    def from_json(cls, text: str) -> Keyring:
        """``{"active": "2", "keys": {"1": b64, "2": b64}, "fingerprint_key": b64}``."""
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError:
            # The decoder's message may quote the document; it holds keys.
            raise KeyringInvalid("the keyring is not valid JSON") from None

        if not isinstance(document, dict):
            raise KeyringInvalid("the keyring must be a JSON object")

        active, keys = document.get("active"), document.get("keys")
        if not isinstance(active, str) or not active:
            raise KeyringInvalid('the keyring has no "active" version (a string)')

        if not isinstance(keys, dict) or not keys:
            raise KeyringInvalid('the keyring has no "keys" object of version to base64 key')

        if "fingerprint_key" not in document:
            raise KeyringInvalid('the keyring has no "fingerprint_key"')

        for version in keys:
            _check_version(version)

        return cls(
            {str(version): _decode(f"keyring entry {version!r}", k) for version, k in keys.items()},
            active=active,
            fingerprint_key=_decode("the fingerprint key", document["fingerprint_key"]),
        )

    @property
    def active_version(self) -> str:
        return self._active

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(sorted(self._keys))

    def fingerprint(self, key: ProviderKey) -> str:
        return key.fingerprint(self._fingerprint_key)

    def wrap(self, data_key: bytes, context: bytes) -> tuple[str, bytes, bytes]:
        """Encrypt a data key under the active entry: (version, nonce, wrapped key)."""
        nonce = os.urandom(NONCE_BYTES)
        aad = _associated_data(_WRAP_PURPOSE, self._active, context)
        return self._active, nonce, AESGCM(self._keys[self._active]).encrypt(nonce, data_key, aad)

    def unwrap(self, version: str, nonce: bytes, wrapped: bytes, context: bytes) -> bytes:
        """The data key wrapped under ``version``; SecretUnreadable if it does not decrypt."""
        kek = self._keys.get(version)
        if kek is None:
            raise SecretUnreadable(f"keyring version {version!r} is no longer in the keyring")

        try:
            data_key = AESGCM(kek).decrypt(
                nonce, wrapped, _associated_data(_WRAP_PURPOSE, version, context)
            )
        except (InvalidTag, ValueError):
            raise SecretUnreadable("the wrapped data key does not decrypt for this row") from None

        if len(data_key) != KEY_BYTES:
            raise SecretUnreadable("the wrapped data key has the wrong length")

        return data_key

    def __repr__(self) -> str:
        return f"Keyring(active={self._active!r}, versions={list(self.versions)!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("keyrings are not pickled")


@dataclass(frozen=True, slots=True)
class SecretOwner:
    """The row a secret belongs to; the ciphertext decrypts only for this exact owner."""

    workspace_id: str
    connection_id: str
    secret_version: int

    def context(self) -> bytes:
        return _associated_data(
            "owner", self.workspace_id, self.connection_id, str(self.secret_version)
        )


@dataclass(frozen=True, slots=True)
class SealedSecret:
    """What is stored for one secret. ``wrapped_data_key`` None means it was shredded."""

    ciphertext: bytes = field(repr=False)
    nonce: bytes = field(repr=False)
    wrapped_data_key: bytes | None = field(repr=False)
    wrap_nonce: bytes | None = field(repr=False)
    keyring_version: str

    @property
    def shredded(self) -> bool:
        return self.wrapped_data_key is None or self.wrap_nonce is None


class EnvelopeCipher:
    """Seals provider keys for one owner and opens them for that owner only."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def seal(self, key: ProviderKey, owner: SecretOwner) -> SealedSecret:
        data_key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        nonce = os.urandom(NONCE_BYTES)
        aad = _associated_data(_CIPHERTEXT_PURPOSE, owner.context())
        ciphertext = AESGCM(data_key).encrypt(nonce, key.reveal().encode(), aad)
        version, wrap_nonce, wrapped = self.keyring.wrap(data_key, owner.context())
        return SealedSecret(ciphertext, nonce, wrapped, wrap_nonce, version)

    def open(self, sealed: SealedSecret, owner: SecretOwner) -> ProviderKey:
        """The provider key, or SecretUnreadable: there is never a substitute value."""
        data_key = self._data_key(sealed, owner)
        aad = _associated_data(_CIPHERTEXT_PURPOSE, owner.context())
        try:
            plain = AESGCM(data_key).decrypt(sealed.nonce, sealed.ciphertext, aad)
        except (InvalidTag, ValueError):
            raise SecretUnreadable("the secret does not decrypt for this row") from None

        try:
            return ProviderKey(plain.decode())
        except ValueError:
            raise SecretUnreadable("the secret decrypted to something that is not a key") from None

    def rewrap(self, sealed: SealedSecret, owner: SecretOwner) -> SealedSecret:
        """The same secret with its data key wrapped under the active keyring entry."""
        data_key = self._data_key(sealed, owner)
        version, wrap_nonce, wrapped = self.keyring.wrap(data_key, owner.context())
        return replace(
            sealed, wrapped_data_key=wrapped, wrap_nonce=wrap_nonce, keyring_version=version
        )

    def _data_key(self, sealed: SealedSecret, owner: SecretOwner) -> bytes:
        if sealed.wrapped_data_key is None or sealed.wrap_nonce is None:
            raise SecretUnreadable(
                "the data key was destroyed when the connection was disconnected"
            )

        return self.keyring.unwrap(
            sealed.keyring_version, sealed.wrap_nonce, sealed.wrapped_data_key, owner.context()
        )


def _associated_data(purpose: str, *fields: str | bytes) -> bytes:
    # Length-prefixed fields: no two different field lists can encode to the same bytes.
    parts = [purpose.encode(), *(f.encode() if isinstance(f, str) else f for f in fields)]
    return b"".join(len(part).to_bytes(4, "big") + part for part in parts)


def _check_version(version: str) -> None:
    if not _VERSION_PATTERN.fullmatch(version):
        raise KeyringInvalid(
            f"keyring version {version[:20]!r} must be 1 to 20 letters, digits, '.', '_' or '-'"
        )


def _decode(what: str, value: object) -> bytes:
    if not isinstance(value, str):
        raise KeyringInvalid(f"{what} must be a base64 string")

    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KeyringInvalid(f"{what} is not valid base64") from None
