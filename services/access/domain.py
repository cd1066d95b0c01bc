"""What access knows about people, tokens and grants: rules only, no web or database code.

Errors raised by access, translated to HTTP in one place (``api.py``)::

    AccessError
    ├── NotFound (LookupError)        the id names nothing in the caller's workspace
    ├── Conflict                      the change contradicts what is already there
    ├── Forbidden (PermissionError)   the caller's role does not allow the change
    └── Invalid (ValueError)          a value parses but cannot be accepted
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from shared.events.schemas import PrincipalKind, Role
from shared.principal import ADMIN_ROLES, TOKEN_PREFIX, token_hash
from shared.secrets import GatewayToken

Permission = Literal["can_view"]

DISPLAY_PREFIX_LENGTH = 12
# The access dialog shows a short list that narrows as the admin types.
DIRECTORY_DEFAULT_LIMIT = 20
DIRECTORY_MAX_LIMIT = 50
_MAX_EMAIL_LENGTH = 254
# Deliberately loose: one "@", something on each side, no spaces. Whether the address
# receives mail is the identity provider's business, not ours.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


class AccessError(Exception):
    """Base of every error access raises; ``code`` is stable, ``message`` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NotFound(AccessError, LookupError):
    pass


class Conflict(AccessError):
    pass


class Forbidden(AccessError, PermissionError):
    pass


class Invalid(AccessError, ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    workspace_id: str
    email: str
    display_name: str
    role: Role
    active: bool

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"


@dataclass(frozen=True, slots=True)
class Group:
    id: str
    workspace_id: str
    name: str


@dataclass(frozen=True, slots=True)
class Token:
    """A token as listed: never its secret, only the prefix a person recognises it by."""

    id: str
    user_id: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewToken:
    """A freshly made token: the secret is shown once, only its hash is kept."""

    secret: GatewayToken
    hash: str
    prefix: str


@dataclass(frozen=True, slots=True)
class Model:
    """A model as access knows it from catalog's events."""

    id: str
    workspace_id: str
    name: str
    retired: bool
    enabled: bool


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    model_id: str
    principal_kind: PrincipalKind
    principal_id: str
    permission: Permission


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """A person or a group that the access dialog offers for a rule."""

    kind: Literal["user", "group"]
    id: str
    name: str
    email: str | None
    active: bool
    # 0 when the name or email starts with the query, 1 when it only contains it.
    rank: int


@dataclass(frozen=True, slots=True)
class Grantee:
    """A member a model is granted to, with every rule that grants it to them."""

    member: Member
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class GrantedModel:
    """A model granted to one member, with every rule that grants it to them."""

    model: Model
    rules: tuple[Rule, ...]


def normalise_email(raw: str) -> str:
    email = raw.strip()
    if len(email) > _MAX_EMAIL_LENGTH or not _EMAIL.match(email):
        raise Invalid("invalid_email", "email must look like name@domain")

    return email


def email_key(email: str) -> str:
    """Emails are unique per workspace regardless of case."""
    return email.lower()


def new_token() -> NewToken:
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return NewToken(
        secret=GatewayToken(secret),
        hash=token_hash(secret),
        prefix=secret[:DISPLAY_PREFIX_LENGTH],
    )


# Far enough for any real use, near enough for every database to store and read back.
MAX_TOKEN_LIFETIME = timedelta(days=5 * 366)


def check_expiry(expires_at: datetime | None, now: datetime) -> None:
    if expires_at is None:
        return

    if expires_at <= now:
        raise Invalid("invalid_expiry", "expires_at must be in the future")

    if expires_at > now + MAX_TOKEN_LIFETIME:
        raise Invalid(
            "invalid_expiry",
            f"expires_at may be at most {MAX_TOKEN_LIFETIME.days} days ahead; "
            "omit it for a token that does not expire",
        )


def check_may_act_on_tokens_of(
    actor_id: str, actor_role: str, holder_id: str, holder_role: str
) -> None:
    """Only an owner issues or revokes another owner's tokens: an admin must not take over."""
    if holder_role == "owner" and holder_id != actor_id and actor_role != "owner":
        raise Forbidden("forbidden", "only an owner can issue or revoke an owner's tokens")


def check_may_assign(actor_role: str, role: Role) -> None:
    """Admins add admins and members; only an owner makes another owner."""
    if role == "owner" and actor_role != "owner":
        raise Forbidden("forbidden", "only an owner can add another owner")


def check_may_deactivate(actor_role: str, target: Member, active_owners: int) -> None:
    _check_owner_kept(actor_role, target, active_owners, "deactivate")


def check_may_remove(actor_role: str, target: Member, active_owners: int) -> None:
    _check_owner_kept(actor_role, target, active_owners, "remove")


def check_may_reactivate(actor_role: str, target: Member) -> None:
    """Reactivating restores the member's role, so it takes the right to grant that role."""
    if target.is_owner and actor_role != "owner":
        raise Forbidden("forbidden", "only an owner can reactivate an owner")


def check_may_change_role(actor_role: str, target: Member, role: Role, active_owners: int) -> None:
    """Admins move people between member and admin; owners are made and unmade by owners."""
    if (role == "owner" or target.is_owner) and actor_role != "owner":
        raise Forbidden("forbidden", "only an owner can make or unmake an owner")

    if not target.active:
        raise Conflict("member_inactive", f"member {target.id} is deactivated; reactivate first")

    if target.is_owner and role != "owner" and active_owners <= 1:
        raise Conflict("last_owner", "the last active owner of a workspace must stay an owner")


def _check_owner_kept(actor_role: str, target: Member, active_owners: int, verb: str) -> None:
    if target.is_owner and actor_role != "owner":
        raise Forbidden("forbidden", f"only an owner can {verb} an owner")

    # A workspace without an active owner could never be administered again.
    if target.is_owner and target.active and active_owners <= 1:
        raise Conflict("last_owner", f"the last active owner of a workspace cannot be {verb}d")


def check_may_revoke(actor_id: str, actor_role: str, token: Token) -> None:
    """Members revoke their own tokens; admins anyone's. Others' tokens stay invisible."""
    if token.user_id != actor_id and actor_role not in ADMIN_ROLES:
        raise NotFound("token_not_found", "no such token in this workspace")


def check_grantable(model: Model) -> None:
    if model.retired:
        raise Conflict("model_retired", f"model {model.name} is retired and cannot be granted")


def directory_query(raw: str) -> str:
    """What the admin typed, as the directory matches it: trimmed and lower-cased.

    Wildcards stay literal characters; the query layer escapes them for LIKE.
    """
    query = raw.strip().lower()
    if not query:
        raise Invalid("invalid_query", "q must contain something other than spaces")

    return query


def directory_page(entries: Iterable[DirectoryEntry], limit: int) -> list[DirectoryEntry]:
    """People and groups in one list: prefix matches first, then by name."""
    ordered = sorted(entries, key=lambda e: (e.rank, e.name.lower(), e.kind, e.id))
    return ordered[:limit]


def grantees(
    rules: Iterable[Rule], members: Iterable[Member], groups_of: Mapping[str, frozenset[str]]
) -> list[Grantee]:
    """Who the rules of one model give it to, each with the rules that do.

    ``groups_of`` maps a member's id to the groups they belong to. Only active members
    are answered: a deactivated member can use nothing, whatever the rules say.
    """
    rules = list(rules)
    found = []
    for member in members:
        if not member.active:
            continue

        granting = tuple(r for r in rules if grants_to(r, member, groups_of.get(member.id, ())))
        if granting:
            found.append(Grantee(member, granting))
    return sorted(found, key=lambda g: (g.member.display_name.lower(), g.member.id))


def granted_models(
    member: Member, rules: Iterable[Rule], models: Mapping[str, Model], groups: frozenset[str]
) -> list[GrantedModel]:
    """The models some rule gives to one member, each with the rules that do.

    Retired models are left out: no rule can make them callable again.
    """
    by_model: dict[str, list[Rule]] = {}
    for rule in rules:
        if grants_to(rule, member, groups):
            by_model.setdefault(rule.model_id, []).append(rule)

    found = [
        GrantedModel(models[model_id], tuple(granting))
        for model_id, granting in by_model.items()
        if model_id in models and not models[model_id].retired
    ]
    return sorted(found, key=lambda g: (g.model.name, g.model.id))


def grants_to(rule: Rule, member: Member, groups: Iterable[str]) -> bool:
    """Whether one rule gives its model to this member (rules of their workspace only)."""
    if rule.principal_kind == "workspace":
        return rule.principal_id == member.workspace_id

    if rule.principal_kind == "group":
        return rule.principal_id in groups

    return rule.principal_id == member.id
