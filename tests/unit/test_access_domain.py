"""The access service's domain rules, without a database or a network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.access.domain import (
    Conflict,
    Forbidden,
    Invalid,
    Member,
    Model,
    NotFound,
    Token,
    check_expiry,
    check_grantable,
    check_may_assign,
    check_may_deactivate,
    check_may_revoke,
    email_key,
    new_token,
    normalise_email,
)
from shared.events.schemas import Role
from shared.principal import token_hash

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def member(role: Role = "member", *, active: bool = True) -> Member:
    return Member("u-1", "ws-1", "a@example.com", "A", role, active)


def token(user_id: str) -> Token:
    return Token("t-1", user_id, "laptop", "byom_abcdefg", NOW, None, None)


def test_new_token_keeps_only_a_hash_and_a_short_prefix() -> None:
    """A new token is byom_-prefixed, its hash is the shared sha256 and its prefix 12 chars."""
    made = new_token()
    secret = made.secret.reveal()

    assert secret.startswith("byom_")
    assert made.hash == token_hash(secret)
    assert made.prefix == secret[:12]
    assert secret not in repr(made)


def test_new_tokens_differ() -> None:
    """Two tokens made one after the other never collide."""
    assert new_token().hash != new_token().hash


@pytest.mark.parametrize("raw", ["", "no-at-sign", "two@@example.com", "a b@example.com", "@x"])
def test_malformed_emails_are_refused(raw: str) -> None:
    """An email without exactly one @ and something on each side is invalid."""
    with pytest.raises(Invalid):
        normalise_email(raw)


def test_emails_are_trimmed_and_compared_without_case() -> None:
    """Surrounding spaces go; case is kept for display but ignored for uniqueness."""
    email = normalise_email("  Ada@Example.COM ")

    assert email == "Ada@Example.COM"
    assert email_key(email) == email_key("ada@example.com")


def test_expiry_must_lie_ahead() -> None:
    """A token cannot be issued already expired; no expiry at all is allowed."""
    check_expiry(None, NOW)
    check_expiry(NOW + timedelta(seconds=1), NOW)
    with pytest.raises(Invalid):
        check_expiry(NOW, NOW)


def test_only_owners_make_owners() -> None:
    """Admins may add admins and members, but an owner only an owner may add."""
    check_may_assign("admin", "admin")
    check_may_assign("owner", "owner")
    with pytest.raises(Forbidden):
        check_may_assign("admin", "owner")


def test_the_last_active_owner_stays() -> None:
    """Deactivating the only active owner conflicts; with a second owner it is allowed."""
    with pytest.raises(Conflict):
        check_may_deactivate("owner", member("owner"), active_owners=1)

    check_may_deactivate("owner", member("owner"), active_owners=2)


def test_admins_cannot_deactivate_owners() -> None:
    """An admin deactivates members and admins, never an owner."""
    check_may_deactivate("admin", member("admin"), active_owners=1)
    with pytest.raises(Forbidden):
        check_may_deactivate("admin", member("owner"), active_owners=2)


def test_members_see_only_their_own_tokens() -> None:
    """A member revoking someone else's token is told it does not exist; an admin may."""
    check_may_revoke("u-1", "member", token("u-1"))
    check_may_revoke("u-1", "admin", token("u-2"))
    with pytest.raises(NotFound):
        check_may_revoke("u-1", "member", token("u-2"))


def test_retired_models_cannot_be_granted() -> None:
    """A model catalog has retired takes no new rules."""
    check_grantable(Model("m-1", "ws-1", "conn/gpt", retired=False))
    with pytest.raises(Conflict):
        check_grantable(Model("m-1", "ws-1", "conn/gpt", retired=True))
