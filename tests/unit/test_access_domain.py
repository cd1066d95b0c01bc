"""The access service's domain rules, without a database or a network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.access.domain import (
    Conflict,
    DirectoryEntry,
    Forbidden,
    Invalid,
    Member,
    Model,
    NotFound,
    Rule,
    Token,
    check_expiry,
    check_grantable,
    check_may_assign,
    check_may_change_role,
    check_may_deactivate,
    check_may_reactivate,
    check_may_remove,
    check_may_revoke,
    directory_page,
    directory_query,
    email_key,
    granted_models,
    grantees,
    new_token,
    normalise_email,
)
from shared.events.schemas import Role
from shared.principal import token_hash

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def member(
    role: Role = "member", *, active: bool = True, user_id: str = "u-1", name: str = "A"
) -> Member:
    return Member(user_id, "ws-1", f"{user_id}@example.com", name, role, active)


def rule(rule_id: str, kind: str, principal_id: str, model_id: str = "m-1") -> Rule:
    return Rule(rule_id, model_id, kind, principal_id, "can_view")  # type: ignore[arg-type]


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
    check_grantable(Model("m-1", "ws-1", "conn/gpt", retired=False, enabled=True))
    with pytest.raises(Conflict):
        check_grantable(Model("m-1", "ws-1", "conn/gpt", retired=True, enabled=True))


def test_removal_keeps_an_owner_like_deactivation() -> None:
    """Only owners remove owners, and never the last active one; a suspended owner may go."""
    check_may_remove("admin", member("member"), active_owners=1)
    check_may_remove("owner", member("owner"), active_owners=2)
    check_may_remove("owner", member("owner", active=False), active_owners=1)
    with pytest.raises(Forbidden):
        check_may_remove("admin", member("owner"), active_owners=2)
    with pytest.raises(Conflict):
        check_may_remove("owner", member("owner"), active_owners=1)


def test_only_owners_reactivate_owners() -> None:
    """Reactivation restores the role, so reactivating an owner takes an owner."""
    check_may_reactivate("admin", member("admin", active=False))
    check_may_reactivate("owner", member("owner", active=False))
    with pytest.raises(Forbidden):
        check_may_reactivate("admin", member("owner", active=False))


@pytest.mark.parametrize(
    ("actor", "target", "role", "owners", "outcome"),
    [
        ("admin", "member", "admin", 1, None),
        ("admin", "admin", "member", 1, None),
        ("admin", "member", "owner", 1, Forbidden),
        ("admin", "owner", "member", 2, Forbidden),
        ("owner", "member", "owner", 1, None),
        ("owner", "owner", "admin", 2, None),
        ("owner", "owner", "admin", 1, Conflict),
    ],
)
def test_role_changes_follow_the_owner_rules(
    actor: str, target: Role, role: Role, owners: int, outcome: type[Exception] | None
) -> None:
    """Admins move people between member and admin; only owners touch owners; the last
    active owner stays an owner."""
    if outcome is None:
        check_may_change_role(actor, member(target), role, owners)
        return

    with pytest.raises(outcome):
        check_may_change_role(actor, member(target), role, owners)


def test_a_suspended_members_role_waits_for_reactivation() -> None:
    """Changing the role of a deactivated member is a conflict, not a silent reactivation."""
    with pytest.raises(Conflict):
        check_may_change_role("owner", member("member", active=False), "admin", 1)


def test_directory_queries_are_trimmed_lowered_and_never_blank() -> None:
    """What the admin typed is matched without case; wildcards stay as typed."""
    assert directory_query("  Ma%R_ ") == "ma%r_"
    with pytest.raises(Invalid):
        directory_query("   ")


def test_directory_page_puts_prefix_matches_first_then_names() -> None:
    """Prefix matches of either kind lead, each rank in name order, cut at the limit."""
    entries = [
        DirectoryEntry("user", "u-2", "omar", "o@x", True, 1),
        DirectoryEntry("group", "g-1", "Marketing", None, True, 0),
        DirectoryEntry("user", "u-1", "mara", "m@x", True, 0),
        DirectoryEntry("user", "u-3", "Amaro", "a@x", True, 1),
    ]

    assert [e.id for e in directory_page(entries, 3)] == ["u-1", "g-1", "u-3"]


def test_grantees_lists_each_active_member_with_every_rule_that_reaches_them() -> None:
    """Workspace, group and user rules add up per member; deactivated members are left out."""
    ann, bob, cy = (
        member(user_id="ann", name="Ann"),
        member(user_id="bob", name="Bob"),
        member(user_id="cy"),
    )
    gone = member(user_id="gone", active=False)
    rules = [
        rule("r-ws", "workspace", "ws-1"),
        rule("r-g", "group", "g-1"),
        rule("r-u", "user", "bob"),
    ]
    groups = {"ann": frozenset({"g-1"}), "gone": frozenset({"g-1"})}

    found = grantees(rules, [cy, bob, ann, gone], groups)

    assert [(g.member.id, [r.id for r in g.rules]) for g in found] == [
        ("cy", ["r-ws"]),
        ("ann", ["r-ws", "r-g"]),
        ("bob", ["r-ws", "r-u"]),
    ]
    assert grantees(rules[1:], [cy], groups) == []


def test_granted_models_name_the_rules_and_skip_retired_models() -> None:
    """Each model some rule gives the member comes with those rules; a retired one does not."""
    ann = member(user_id="ann")
    models = {
        "m-1": Model("m-1", "ws-1", "c/one", retired=False, enabled=True),
        "m-2": Model("m-2", "ws-1", "c/two", retired=False, enabled=False),
        "m-3": Model("m-3", "ws-1", "c/three", retired=True, enabled=True),
    }
    rules = [
        rule("r-1", "group", "g-1", "m-1"),
        rule("r-2", "user", "ann", "m-1"),
        rule("r-3", "workspace", "ws-1", "m-2"),
        rule("r-4", "user", "ann", "m-3"),
        rule("r-5", "user", "someone-else", "m-2"),
        rule("r-6", "group", "g-other", "m-2"),
    ]

    found = granted_models(ann, rules, models, frozenset({"g-1"}))

    assert [(g.model.id, [r.id for r in g.rules]) for g in found] == [
        ("m-1", ["r-1", "r-2"]),
        ("m-2", ["r-3"]),
    ]
