"""The data of every event type, versioned from the start.

Each class names its producing service, its aggregate and its event; together they give
the CloudEvents ``type`` (``byom.<aggregate>.<event>.v<N>``) and the NATS subject
(``<prefix>.<service>.<aggregate>.<event>``). A schema change only adds optional
fields; anything else is a new class with the next version.

Nothing here may hold key material: connections are described by a masked key and a
keyed fingerprint, tokens by a hash of the token.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

Role = Literal["owner", "admin", "member"]
PrincipalKind = Literal["workspace", "group", "user"]


class EventData(BaseModel):
    """Base of every event's ``data``."""

    model_config = ConfigDict(frozen=True, extra="allow")

    service: ClassVar[str]
    aggregate: ClassVar[str]
    name: ClassVar[str]
    version: ClassVar[int] = 1

    @classmethod
    def event_type(cls) -> str:
        return f"byom.{cls.aggregate}.{cls.name}.v{cls.version}"

    @classmethod
    def subject(cls, prefix: str) -> str:
        return f"{prefix}.{cls.service}.{cls.aggregate}.{cls.name}"


# keyvault


class ProviderEvent(EventData):
    service = "keyvault"
    aggregate = "provider"

    connection_id: str


class ProviderConnected(ProviderEvent):
    name = "connected"

    provider: str
    connection_name: str
    base_url: str
    masked_key: str
    fingerprint: str


class ProviderKeyRotated(ProviderEvent):
    name = "key_rotated"

    masked_key: str
    fingerprint: str


class ProviderVerificationFailed(ProviderEvent):
    name = "verification_failed"

    provider: str
    connection_name: str
    reason: str


class ProviderDisconnected(ProviderEvent):
    name = "disconnected"


class KeyringEvent(EventData):
    """The install's keyring, which wraps every connection's data key."""

    service = "keyvault"
    aggregate = "keyring"

    keyring_version: str


class KeyringSecretsRewrapped(KeyringEvent):
    """A rewrap moved stored secrets to ``keyring_version``, the keyring's active entry.

    ``unreadable`` secrets did not open and stayed where they were; a person must look at
    them before the older keyring entries are removed.
    """

    name = "secrets_rewrapped"

    rewrapped: int
    unreadable: int
    unreadable_connection_ids: list[str] = []
    via: Literal["command", "api"]


# catalog


class ModelEvent(EventData):
    service = "catalog"
    aggregate = "model"

    model_id: str
    connection_id: str


class ModelDiscovered(ModelEvent):
    name = "discovered"

    model_name: str
    upstream_id: str
    provider: str
    owned_by: str | None = None


class ModelUpdated(ModelEvent):
    name = "updated"

    owned_by: str | None = None


class ModelRetired(ModelEvent):
    name = "retired"


class ModelEnabled(ModelEvent):
    name = "enabled"


class ModelDisabled(ModelEvent):
    name = "disabled"


# access


class WorkspaceCreated(EventData):
    service = "access"
    aggregate = "workspace"
    name = "created"

    workspace_name: str


class UserEvent(EventData):
    service = "access"
    aggregate = "user"

    user_id: str


class UserCreated(UserEvent):
    name = "created"

    email: str
    display_name: str


class MemberEvent(EventData):
    service = "access"
    aggregate = "member"

    user_id: str


class MemberAdded(MemberEvent):
    name = "added"

    role: Role


class MemberDeactivated(MemberEvent):
    name = "deactivated"


class GroupEvent(EventData):
    service = "access"
    aggregate = "group"

    group_id: str


class GroupCreated(GroupEvent):
    name = "created"

    group_name: str


class GroupMemberAdded(GroupEvent):
    name = "member_added"

    user_id: str


class GroupMemberRemoved(GroupEvent):
    name = "member_removed"

    user_id: str


class TokenEvent(EventData):
    service = "access"
    aggregate = "token"

    token_id: str
    user_id: str


class TokenIssued(TokenEvent):
    name = "issued"

    token_hash: str
    token_prefix: str
    token_name: str
    expires_at: datetime | None = None


class TokenRevoked(TokenEvent):
    name = "revoked"


class AccessEvent(EventData):
    service = "access"
    aggregate = "access"

    rule_id: str
    model_id: str
    principal_kind: PrincipalKind
    principal_id: str


class AccessGranted(AccessEvent):
    name = "granted"

    permission: Literal["can_view"] = "can_view"


class AccessRevoked(AccessEvent):
    name = "revoked"


# proxy


class UsageRecorded(EventData):
    service = "proxy"
    aggregate = "usage"
    name = "recorded"

    request_id: str
    user_id: str
    token_id: str
    model_id: str
    model_name: str
    connection_id: str
    provider: str
    operation: str
    streamed: bool
    status: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    duration_ms: float


ALL_EVENTS: tuple[type[EventData], ...] = (
    ProviderConnected,
    ProviderKeyRotated,
    ProviderVerificationFailed,
    ProviderDisconnected,
    ModelDiscovered,
    ModelUpdated,
    ModelRetired,
    ModelEnabled,
    ModelDisabled,
    WorkspaceCreated,
    UserCreated,
    MemberAdded,
    MemberDeactivated,
    GroupCreated,
    GroupMemberAdded,
    GroupMemberRemoved,
    TokenIssued,
    TokenRevoked,
    AccessGranted,
    AccessRevoked,
    UsageRecorded,
    KeyringSecretsRewrapped,
)
BY_TYPE: dict[str, type[EventData]] = {cls.event_type(): cls for cls in ALL_EVENTS}


def parse_data(event_type: str, data: dict[str, object]) -> EventData | None:
    """The typed data of a known event type; None for types this code does not know."""
    cls = BY_TYPE.get(event_type)
    if cls is None:
        return None

    return cls.model_validate(data)
