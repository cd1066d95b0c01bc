"""keyvault's envelope cipher and keyring: what decrypts, what must not, and refusing to start.

Every failure case here must raise: a cipher that returned something instead would hand a
wrong or empty key to the proxy without anyone noticing.
"""

from __future__ import annotations

import base64
import dataclasses
import secrets
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from services.keyvault.app import create_app
from services.keyvault.cipher import EnvelopeCipher, Keyring, SealedSecret, SecretOwner
from services.keyvault.errors import KeyringInvalid, SecretUnreadable
from services.keyvault.settings import Settings
from shared.secrets import GatewayToken, ProviderKey

# Settings look for mounted secrets in a directory this machine does not have.


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def keyring_document(
    active: str = "2", versions: tuple[str, ...] = ("1", "2")
) -> dict[str, object]:
    return {
        "active": active,
        "keys": {v: b64(secrets.token_bytes(32)) for v in versions},
        "fingerprint_key": b64(secrets.token_bytes(32)),
    }


def keyring_from(document: dict[str, object]) -> Keyring:
    return Keyring.from_json(orjson.dumps(document).decode())


def provider_key() -> ProviderKey:
    return ProviderKey("sk-test-" + secrets.token_urlsafe(24))


def owner(**changes: object) -> SecretOwner:
    base = SecretOwner(str(uuid.uuid4()), str(uuid.uuid4()), 1)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def flip_last_byte(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 0x01])


@pytest.fixture
def cipher() -> EnvelopeCipher:
    return EnvelopeCipher(keyring_from(keyring_document()))


# Round trip and freshness


def test_a_sealed_key_opens_for_its_owner(cipher: EnvelopeCipher) -> None:
    """Sealing then opening with the same owner gives back exactly the provider key."""
    key, row = provider_key(), owner()

    assert cipher.open(cipher.seal(key, row), row).reveal() == key.reveal()


def test_no_key_seals_and_opens_as_no_key(cipher: EnvelopeCipher) -> None:
    """A keyless server's connection is sealed like any other and opens as "no key"."""
    row = owner()
    sealed = cipher.seal(ProviderKey.none(), row)

    opened = cipher.open(sealed, row)

    assert not opened and opened.reveal() == "" and opened.masked == "(none)"
    with pytest.raises(SecretUnreadable):
        cipher.open(sealed, owner())


def test_only_a_provider_key_may_be_empty() -> None:
    assert not ProviderKey("") and repr(ProviderKey("")) == "ProviderKey('(none)')"
    with pytest.raises(ValueError, match="empty"):
        GatewayToken("")


def test_sealing_uses_the_active_keyring_version_and_hides_the_key(cipher: EnvelopeCipher) -> None:
    """A sealed secret names the active keyring version and contains no readable trace of the key."""
    key = provider_key()

    sealed = cipher.seal(key, owner())

    assert sealed.keyring_version == "2"
    assert len(sealed.nonce) == 12
    assert key.reveal().encode() not in sealed.ciphertext
    assert key.reveal() not in repr(sealed)


def test_each_seal_uses_a_fresh_data_key_and_nonces(cipher: EnvelopeCipher) -> None:
    """Sealing one key twice gives different ciphertexts, nonces and wrapped data keys."""
    key, row = provider_key(), owner()

    first, second = cipher.seal(key, row), cipher.seal(key, row)

    assert first.ciphertext != second.ciphertext
    assert first.nonce != second.nonce
    assert first.wrapped_data_key != second.wrapped_data_key
    assert first.wrap_nonce != second.wrap_nonce


# Tampering and moving


@pytest.mark.parametrize("field", ["ciphertext", "nonce", "wrapped_data_key", "wrap_nonce"])
def test_a_tampered_secret_does_not_open(cipher: EnvelopeCipher, field: str) -> None:
    """One flipped bit in any stored part of a secret makes opening raise."""
    row = owner()
    sealed = cipher.seal(provider_key(), row)
    tampered = dataclasses.replace(sealed, **{field: flip_last_byte(getattr(sealed, field))})

    with pytest.raises(SecretUnreadable):
        cipher.open(tampered, row)


@pytest.mark.parametrize(
    "change",
    [
        {"workspace_id": "another-workspace"},
        {"connection_id": "another-connection"},
        {"secret_version": 2},
    ],
)
def test_a_secret_does_not_open_for_a_different_owner(
    cipher: EnvelopeCipher, change: dict[str, object]
) -> None:
    """The associated data binds a secret to its workspace, connection and secret version."""
    row = owner()
    sealed = cipher.seal(provider_key(), row)

    with pytest.raises(SecretUnreadable):
        cipher.open(sealed, dataclasses.replace(row, **change))  # type: ignore[arg-type]


def test_a_secret_copied_onto_another_row_does_not_open(cipher: EnvelopeCipher) -> None:
    """Another connection's sealed secret, copied whole or in part onto this row, never opens here."""
    ours, theirs = owner(), owner()
    our_sealed = cipher.seal(provider_key(), ours)
    their_sealed = cipher.seal(provider_key(), theirs)
    their_ciphertext_on_our_row = dataclasses.replace(
        our_sealed, ciphertext=their_sealed.ciphertext, nonce=their_sealed.nonce
    )

    with pytest.raises(SecretUnreadable):
        cipher.open(their_sealed, ours)
    with pytest.raises(SecretUnreadable):
        cipher.open(their_ciphertext_on_our_row, ours)


def test_a_secret_relabelled_with_another_keyring_version_does_not_open() -> None:
    """The keyring version is bound into the wrapping, so a row cannot claim another one."""
    cipher = EnvelopeCipher(keyring_from(keyring_document()))
    row = owner()
    sealed = cipher.seal(provider_key(), row)

    with pytest.raises(SecretUnreadable):
        cipher.open(dataclasses.replace(sealed, keyring_version="1"), row)


def test_a_shredded_secret_does_not_open(cipher: EnvelopeCipher) -> None:
    """Without its wrapped data key (destroyed at disconnect) a secret raises instead of opening."""
    row = owner()
    shredded = dataclasses.replace(
        cipher.seal(provider_key(), row), wrapped_data_key=None, wrap_nonce=None
    )

    assert shredded.shredded
    with pytest.raises(SecretUnreadable, match="destroyed"):
        cipher.open(shredded, row)


# Keyring versions


def test_an_older_keyring_entry_still_opens_and_rewrap_moves_to_the_active_one() -> None:
    """A secret wrapped under version 1 opens after version 2 becomes active, and rewraps to 2."""
    document = keyring_document(active="1")
    old_cipher = EnvelopeCipher(keyring_from(document))
    key, row = provider_key(), owner()
    sealed = old_cipher.seal(key, row)
    new_cipher = EnvelopeCipher(keyring_from({**document, "active": "2"}))

    rewrapped = new_cipher.rewrap(sealed, row)

    assert new_cipher.open(sealed, row) == key
    assert rewrapped.keyring_version == "2"
    assert rewrapped.ciphertext == sealed.ciphertext
    assert new_cipher.open(rewrapped, row) == key


def test_a_secret_of_a_removed_keyring_version_does_not_open() -> None:
    """Once its keyring entry is gone, a secret raises, naming the version it needs."""
    document = keyring_document(active="1")
    sealed_under_1 = EnvelopeCipher(keyring_from(document))
    row = owner()
    sealed = sealed_under_1.seal(provider_key(), row)
    keys = document["keys"]
    assert isinstance(keys, dict)
    without_1 = {**document, "active": "2", "keys": {"2": keys["2"]}}

    with pytest.raises(SecretUnreadable, match="'1'"):
        EnvelopeCipher(keyring_from(without_1)).open(sealed, row)


def test_a_different_keyring_cannot_open_a_secret() -> None:
    """Another install's keyring, even with the same version names, opens nothing of ours."""
    row = owner()
    sealed = EnvelopeCipher(keyring_from(keyring_document())).seal(provider_key(), row)

    with pytest.raises(SecretUnreadable):
        EnvelopeCipher(keyring_from(keyring_document())).open(sealed, row)


def test_fingerprints_are_keyed_by_the_fingerprint_key() -> None:
    """The same key has one fingerprint under one keyring and another under a different one."""
    key = provider_key()
    document = keyring_document()

    assert keyring_from(document).fingerprint(key) == keyring_from(document).fingerprint(key)
    assert keyring_from(document).fingerprint(key) != keyring_from(keyring_document()).fingerprint(
        key
    )
    assert key.reveal() not in keyring_from(document).fingerprint(key)


def test_a_keyring_prints_no_key_and_is_not_pickled() -> None:
    """A keyring's repr lists versions only, and it refuses to be pickled."""
    document = keyring_document()
    keyring = keyring_from(document)
    keys = document["keys"]
    assert isinstance(keys, dict)

    assert repr(keyring) == "Keyring(active='2', versions=['1', '2'])"
    assert not any(str(k) in repr(keyring) for k in keys.values())
    with pytest.raises(TypeError):
        keyring.__reduce__()


# A keyring that is missing or wrong: refuse to start


def broken(document: dict[str, object], **changes: object) -> str:
    return orjson.dumps({**document, **changes}).decode()


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: "[]", "must be a JSON object"),
        (lambda d: broken(d, active=None), '"active"'),
        (lambda d: broken(d, keys={}), '"keys"'),
        (lambda d: broken(d, active="3"), "active version '3' is not in the keyring"),
        (lambda d: broken(d, keys={"2": b64(b"short")}), "5 bytes long; AES-256 needs exactly 32"),
        (lambda d: broken(d, keys={"2": "!!not base64!!"}), "entry '2' is not valid base64"),
        (lambda d: broken(d, keys={"two words": b64(bytes(32))}), "must be 1 to 20 letters"),
        (lambda d: orjson.dumps({"active": "2", "keys": d["keys"]}).decode(), '"fingerprint_key"'),
        (lambda d: broken(d, fingerprint_key=b64(bytes(8))), "at least 32 bytes"),
        (
            lambda d: broken(d, fingerprint_key=d["keys"]["2"]),  # type: ignore[index]
            "must differ from every keyring entry",
        ),
    ],
)
def test_a_malformed_keyring_is_refused_with_what_is_wrong(make: object, problem: str) -> None:
    """Each kind of malformed keyring raises KeyringInvalid saying what is wrong, quoting no key."""
    document = keyring_document()
    text = make(document)  # type: ignore[operator]

    with pytest.raises(KeyringInvalid) as raised:
        Keyring.from_json(text)

    assert problem in str(raised.value)
    keys = document["keys"]
    assert isinstance(keys, dict)
    for secret in [*keys.values(), document["fingerprint_key"]]:
        assert str(secret) not in str(raised.value)


def test_settings_without_a_keyring_refuse_with_a_clear_message() -> None:
    """With neither BYOM_KEYRING nor BYOM_KEYRING_FILE, loading the keyring says to set one."""
    settings = Settings(
        environment="test", service_secret="s" * 40, keyring=None, keyring_file=None
    )

    with pytest.raises(KeyringInvalid, match="no keyring: set BYOM_KEYRING"):
        settings.load_keyring()


def test_settings_read_the_keyring_from_a_mounted_file(tmp_path: Path) -> None:
    """BYOM_KEYRING_FILE names a file with the keyring JSON, as a mounted Kubernetes Secret."""
    path = tmp_path / "keyring.json"
    path.write_text(orjson.dumps(keyring_document(active="1")).decode())
    settings = Settings(
        environment="test", service_secret="s" * 40, keyring=None, keyring_file=path
    )

    assert settings.load_keyring().active_version == "1"


def test_settings_refuse_an_unreadable_file_and_two_sources(tmp_path: Path) -> None:
    """A keyring file that cannot be read, or both sources at once, are refused by name."""
    missing = tmp_path / "nothing-here.json"
    inline = orjson.dumps(keyring_document()).decode()
    unreadable = Settings(environment="test", service_secret="s" * 40, keyring_file=missing)
    both = Settings(
        environment="test", service_secret="s" * 40, keyring=inline, keyring_file=missing
    )

    with pytest.raises(KeyringInvalid, match=r"cannot read the keyring file .*nothing-here\.json"):
        unreadable.load_keyring()
    with pytest.raises(KeyringInvalid, match="both BYOM_KEYRING and BYOM_KEYRING_FILE"):
        both.load_keyring()


def test_a_bad_keyring_is_reported_with_its_source() -> None:
    """The message names the variable the bad keyring came from."""
    settings = Settings(environment="test", service_secret="s" * 40, keyring="{}")

    with pytest.raises(KeyringInvalid, match=r'^BYOM_KEYRING: the keyring has no "active"'):
        settings.load_keyring()


@pytest.mark.parametrize("token", ["operator", "short-token", "CHANGEME"])
def test_settings_refuse_a_weak_operator_token(token: str) -> None:
    """A set but weak BYOM_OPERATOR_TOKEN stops keyvault at start, and the message does not quote it."""
    with pytest.raises(ValueError, match="BYOM_OPERATOR_TOKEN must be empty or") as raised:
        Settings(environment="test", service_secret="s" * 40, operator_token=token)

    assert token not in str(raised.value)


async def test_without_an_operator_token_the_rewrap_route_refuses_everyone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With BYOM_OPERATOR_TOKEN unset keyvault starts, and its HTTP rewrap refuses any bearer."""
    monkeypatch.setenv("BYOM_ENVIRONMENT", "test")
    monkeypatch.setenv("BYOM_SERVICE_SECRET", secrets.token_urlsafe(40))
    monkeypatch.setenv("BYOM_KEYRING", orjson.dumps(keyring_document()).decode())
    monkeypatch.delenv("BYOM_KEYRING_FILE", raising=False)
    monkeypatch.delenv("BYOM_OPERATOR_TOKEN", raising=False)
    app = create_app()

    # No lifespan: the refusal comes before anything touches the database.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://keyvault.test") as client:
        answers = [
            await client.post("/keyvault/v1/keyring/rewrap"),
            await client.post("/keyvault/v1/keyring/rewrap", headers={"Authorization": "Bearer "}),
            await client.post(
                "/keyvault/v1/keyring/rewrap", headers={"Authorization": "Bearer " + "x" * 30}
            ),
        ]

    assert [a.status_code for a in answers] == [401, 401, 401]


def test_the_app_is_not_built_without_a_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """create_app raises KeyringInvalid before building anything when no keyring is configured."""
    monkeypatch.setenv("BYOM_ENVIRONMENT", "test")
    monkeypatch.setenv("BYOM_SERVICE_SECRET", secrets.token_urlsafe(40))
    monkeypatch.delenv("BYOM_KEYRING", raising=False)
    monkeypatch.delenv("BYOM_KEYRING_FILE", raising=False)

    with pytest.raises(KeyringInvalid, match="no keyring"):
        create_app()


def test_a_sealed_secret_repr_shows_only_its_keyring_version() -> None:
    """SealedSecret's repr leaves out the ciphertext, nonces and wrapped key."""
    sealed = SealedSecret(b"c", b"n", b"w", b"wn", keyring_version="7")

    assert repr(sealed) == "SealedSecret(keyring_version='7')"
