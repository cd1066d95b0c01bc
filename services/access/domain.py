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
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from shared.events.schemas import PrincipalKind, Role
from shared.principal import ADMIN_ROLES, TOKEN_PREFIX, token_hash
from shared.secrets import GatewayToken

Permission = Literal["can_view"]

DISPLAY_PREFIX_LENGTH = 12
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
    id: str
    workspace_id: str
    name: str
    retired: bool


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    model_id: str
    principal_kind: PrincipalKind
    principal_id: str
    permission: Permission


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


def check_expiry(expires_at: datetime | None, now: datetime) -> None:
    if expires_at is not None and expires_at <= now:
        raise Invalid("invalid_expiry", "expires_at must be in the future")


def check_may_assign(actor_role: str, role: Role) -> None:
    """Admins add admins and members; only an owner makes another owner."""
    if role == "owner" and actor_role != "owner":
        raise Forbidden("forbidden", "only an owner can add another owner")


def check_may_deactivate(actor_role: str, target: Member, active_owners: int) -> None:
    if target.is_owner and actor_role != "owner":
        raise Forbidden("forbidden", "only an owner can deactivate an owner")

    # A workspace without an active owner could never be administered again.
    if target.is_owner and target.active and active_owners <= 1:
        raise Conflict("last_owner", "the last active owner of a workspace cannot be deactivated")


def check_may_revoke(actor_id: str, actor_role: str, token: Token) -> None:
    """Members revoke their own tokens; admins anyone's. Others' tokens stay invisible."""
    if token.user_id != actor_id and actor_role not in ADMIN_ROLES:
        raise NotFound("token_not_found", "no such token in this workspace")


def check_grantable(model: Model) -> None:
    if model.retired:
        raise Conflict("model_retired", f"model {model.name} is retired and cannot be granted")
