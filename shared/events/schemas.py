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
# Who connected a provider: a workspace's admin (its own models, "bring your own"), or the
# install's operator, whose models are offered to workspaces as managed models.
ConnectionScope = Literal["workspace", "install"]
ModelSource = Literal["byom", "managed"]
ModelSources = Literal["managed_only", "byom_only", "both"]


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
    # "install" for the operator's connections, whose envelope names no workspace.
    scope: ConnectionScope = "workspace"


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


class ModelPrice(BaseModel):
    """What a model costs, in US dollars per million tokens."""

    model_config = ConfigDict(frozen=True)

    input: float
    output: float
    cached_input: float | None = None


class ModelDetails(BaseModel):
    """What the catalog knows about a model besides its name: from the provider's listing,
    overlaid with the catalog's data file.

    ``price`` None means the price is unknown: such a model must never be counted as free.
    ``successor`` is the gateway name (``<connection>/<upstream id>``) of the model that
    replaces this one, when the provider or the data file names one.
    """

    model_config = ConfigDict(frozen=True)

    display_name: str | None = None
    family: str | None = None
    context_window: int | None = None
    input_modalities: list[str] = []
    output_modalities: list[str] = []
    supports_tools: bool | None = None
    price: ModelPrice | None = None
    successor: str | None = None


NewModelAction = Literal["disabled", "enable_for_workspace", "enable_for_groups"]


class AutoGrant(BaseModel):
    """Rules that access creates, as the system, for a model a connection's policy enabled.

    ``principal_kind`` "workspace" grants the whole workspace; "group" grants each of
    ``group_ids`` that exists in the workspace.
    """

    model_config = ConfigDict(frozen=True)

    principal_kind: Literal["workspace", "group"]
    group_ids: list[str] = []


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
    # Absent on events written before the catalog described models.
    details: ModelDetails | None = None
    # "managed" for an install model offered to the workspace; absent means "byom".
    source: ModelSource | None = None


class ModelUpdated(ModelEvent):
    """The model's description changed; the event carries all of it as it is now."""

    name = "updated"

    owned_by: str | None = None
    # Absent on events written before the catalog described models: only owned_by changed.
    details: ModelDetails | None = None


class ModelRetired(ModelEvent):
    name = "retired"

    # The gateway name of the model that replaces it, when one is known.
    successor: str | None = None


class ModelEnabled(ModelEvent):
    name = "enabled"

    # Set when the connection's new-model policy enabled the model: what access should grant.
    grant: AutoGrant | None = None


class ModelDisabled(ModelEvent):
    name = "disabled"


class ModelWithdrawn(ModelEvent):
    """The operator stopped offering a managed model to the workspace.

    Its id stays valid in rules and history; offered again, it is discovered again,
    disabled, under the same id.
    """

    name = "withdrawn"


class AliasEvent(EventData):
    """A workspace's alias: a short name an admin points at one of its models."""

    service = "catalog"
    aggregate = "alias"

    alias: str


class AliasSet(AliasEvent):
    """The alias was created or re-pointed; calls by it now reach ``model_id``."""

    name = "set"

    model_id: str
    model_name: str


class AliasRemoved(AliasEvent):
    name = "removed"


class NewModelPolicySet(EventData):
    """An admin decided what happens to models a connection's syncs discover from now on."""

    service = "catalog"
    aggregate = "connection"
    name = "new_model_policy_set"

    connection_id: str
    action: NewModelAction
    group_ids: list[str] = []


# access


class WorkspaceCreated(EventData):
    service = "access"
    aggregate = "workspace"
    name = "created"

    workspace_name: str


class WorkspaceSettingsChanged(EventData):
    """An admin changed a workspace setting; a field left out (None) did not change."""

    service = "access"
    aggregate = "workspace"
    name = "settings_changed"

    # Whether members may call models whose price the catalog does not know.
    allow_unpriced_models: bool | None = None
    # Which models members may call: the workspace's own, the managed ones, or both.
    model_sources: ModelSources | None = None


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
    # Whose connection carried the call: the workspace's own, or the install's (managed).
    source: ModelSource | None = None
    # The alias the caller named, when it named one instead of the model.
    alias: str | None = None


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
    ModelWithdrawn,
    NewModelPolicySet,
    AliasSet,
    AliasRemoved,
    WorkspaceCreated,
    WorkspaceSettingsChanged,
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
