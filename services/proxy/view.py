"""What the proxy knows, built from events: tokens, members, groups, models, rules.

Everything a request needs to be decided is here, in memory, indexed for the questions
the hot path asks: whose token is this, which model does this name mean, does any rule
grant it to this member. A decision costs a few dictionary look-ups however many
models, members and rules the workspace has.

Rules add up: the view counts grants per model for the workspace, per group and per
user, so removing one rule takes away only what that rule gave.

A retired model is refused with its successor's name when the catalog gave one. A model
the catalog has no price for is refused when its workspace does not allow unpriced
models; models described before the catalog knew prices count as unpriced.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from shared.events import schemas as ev
from shared.events.envelope import Envelope


@dataclass(slots=True)
class Token:
    token_id: str
    user_id: str
    workspace_id: str
    expires_at: datetime | None
    revoked: bool = False


@dataclass(slots=True)
class Member:
    user_id: str
    workspace_id: str
    role: str
    active: bool = True
    groups: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Connection:
    connection_id: str
    workspace_id: str
    provider: str
    name: str
    base_url: str
    active: bool = True


@dataclass(slots=True)
class Model:
    model_id: str
    workspace_id: str
    connection_id: str
    name: str
    upstream_id: str
    provider: str
    enabled: bool = False
    retired: bool = False
    created: int = 0
    price_unknown: bool = True
    successor: str | None = None


@dataclass(slots=True)
class Grants:
    """How many rules give one model to the workspace, to each group, to each user."""

    workspace: int = 0
    groups: Counter[str] = field(default_factory=Counter)
    users: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class Rule:
    model_id: str
    kind: str
    principal_id: str


@dataclass(frozen=True, slots=True)
class Caller:
    token_id: str
    user_id: str
    workspace_id: str
    role: str


class Refusal(Enum):
    """Why a call is refused; the edge turns each into its status and message."""

    UNKNOWN_MODEL = "unknown_model"
    MODEL_DISABLED = "model_disabled"
    CONNECTION_INACTIVE = "connection_inactive"
    NOT_GRANTED = "not_granted"
    PRICE_UNKNOWN = "price_unknown"


@dataclass(frozen=True, slots=True)
class Retired:
    """A refusal of a retired model, naming what replaces it when that is known."""

    successor: str | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """A permitted call: which model, on which connection."""

    model: Model
    connection: Connection


class View:
    """The proxy's in-memory picture of every workspace, kept current by events."""

    def __init__(self) -> None:
        self.tokens: dict[str, Token] = {}
        self.token_hashes: dict[str, str] = {}
        self.members: dict[str, Member] = {}
        self.groups: dict[str, str] = {}
        self.connections: dict[str, Connection] = {}
        self.models: dict[str, Model] = {}
        self.model_names: dict[tuple[str, str], str] = {}
        self.rules: dict[str, Rule] = {}
        self.grants: dict[str, Grants] = {}
        # Workspaces that refuse models without a known price; the default allows them.
        self.unpriced_refused: set[str] = set()

    # Questions the hot path asks.

    def authenticate(self, token_digest: str, now: datetime | None = None) -> Caller | None:
        token = self.tokens.get(token_digest)
        if token is None or token.revoked:
            return None

        if token.expires_at is not None and token.expires_at <= (now or datetime.now(UTC)):
            return None

        member = self.members.get(token.user_id)
        if member is None or not member.active or member.workspace_id != token.workspace_id:
            return None

        return Caller(token.token_id, token.user_id, token.workspace_id, member.role)

    def route(self, caller: Caller, model_name: str) -> Route | Refusal | Retired:
        model_id = self.model_names.get((caller.workspace_id, model_name))
        if model_id is None:
            return Refusal.UNKNOWN_MODEL

        model = self.models[model_id]
        if model.retired:
            return Retired(model.successor)

        if not model.enabled:
            return Refusal.MODEL_DISABLED

        connection = self.connections.get(model.connection_id)
        if connection is None or not connection.active:
            return Refusal.CONNECTION_INACTIVE

        if not self._granted(caller, model_id):
            return Refusal.NOT_GRANTED

        if model.price_unknown and caller.workspace_id in self.unpriced_refused:
            return Refusal.PRICE_UNKNOWN

        return Route(model, connection)

    def usable_models(self, caller: Caller) -> list[Model]:
        usable = []
        for model_id, model in self.models.items():
            if model.workspace_id != caller.workspace_id:
                continue
            if isinstance(self.route(caller, model.name), Route):
                usable.append(self.models[model_id])
        return sorted(usable, key=lambda m: m.name)

    def _granted(self, caller: Caller, model_id: str) -> bool:
        grants = self.grants.get(model_id)
        if grants is None:
            return False

        if grants.workspace > 0 or grants.users[caller.user_id] > 0:
            return True

        member = self.members.get(caller.user_id)
        return member is not None and any(grants.groups[g] > 0 for g in member.groups)

    # Events that change the picture.

    def apply(self, envelope: Envelope) -> None:
        data = ev.parse_data(envelope.type, envelope.data)
        if data is None:
            return

        handler = _HANDLERS.get(type(data))
        if handler is not None:
            handler(self, data, envelope)

    def _token_issued(self, data: ev.TokenIssued, envelope: Envelope) -> None:
        workspace_id = envelope.workspaceid or ""
        self.tokens[data.token_hash] = Token(
            data.token_id, data.user_id, workspace_id, data.expires_at
        )
        self.token_hashes[data.token_id] = data.token_hash

    def _token_revoked(self, data: ev.TokenRevoked, _envelope: Envelope) -> None:
        digest = self.token_hashes.get(data.token_id)
        if digest is not None and digest in self.tokens:
            self.tokens[digest].revoked = True

    def _member_added(self, data: ev.MemberAdded, envelope: Envelope) -> None:
        member = self.members.get(data.user_id)
        if member is None:
            self.members[data.user_id] = Member(data.user_id, envelope.workspaceid or "", data.role)
        else:
            member.role = data.role
            member.active = True

    def _member_deactivated(self, data: ev.MemberDeactivated, _envelope: Envelope) -> None:
        member = self.members.get(data.user_id)
        if member is not None:
            member.active = False

    def _workspace_settings_changed(
        self, data: ev.WorkspaceSettingsChanged, envelope: Envelope
    ) -> None:
        workspace_id = envelope.workspaceid or ""
        if data.allow_unpriced_models is True:
            self.unpriced_refused.discard(workspace_id)
        elif data.allow_unpriced_models is False:
            self.unpriced_refused.add(workspace_id)

    def _group_created(self, data: ev.GroupCreated, envelope: Envelope) -> None:
        self.groups[data.group_id] = envelope.workspaceid or ""

    def _group_member_added(self, data: ev.GroupMemberAdded, _envelope: Envelope) -> None:
        member = self.members.get(data.user_id)
        if member is not None:
            member.groups.add(data.group_id)

    def _group_member_removed(self, data: ev.GroupMemberRemoved, _envelope: Envelope) -> None:
        member = self.members.get(data.user_id)
        if member is not None:
            member.groups.discard(data.group_id)

    def _provider_connected(self, data: ev.ProviderConnected, envelope: Envelope) -> None:
        self.connections[data.connection_id] = Connection(
            data.connection_id,
            envelope.workspaceid or "",
            data.provider,
            data.connection_name,
            data.base_url,
        )

    def _provider_disconnected(self, data: ev.ProviderDisconnected, _envelope: Envelope) -> None:
        connection = self.connections.get(data.connection_id)
        if connection is not None:
            connection.active = False

    def _model_discovered(self, data: ev.ModelDiscovered, envelope: Envelope) -> None:
        workspace_id = envelope.workspaceid or ""
        self.models[data.model_id] = Model(
            data.model_id,
            workspace_id,
            data.connection_id,
            data.model_name,
            data.upstream_id,
            data.provider,
            created=int(envelope.time.timestamp()),
            price_unknown=data.details is None or data.details.price is None,
        )
        self.model_names[(workspace_id, data.model_name)] = data.model_id

    def _model_updated(self, data: ev.ModelUpdated, _envelope: Envelope) -> None:
        model = self.models.get(data.model_id)
        if model is not None and data.details is not None:
            model.price_unknown = data.details.price is None

    def _model_flag(self, data: ev.ModelEvent, _envelope: Envelope) -> None:
        model = self.models.get(data.model_id)
        if model is None:
            return

        if isinstance(data, ev.ModelEnabled):
            model.enabled = True
        elif isinstance(data, ev.ModelDisabled):
            model.enabled = False
        elif isinstance(data, ev.ModelRetired):
            model.retired = True
            model.successor = data.successor

    def _access_granted(self, data: ev.AccessGranted, _envelope: Envelope) -> None:
        if data.rule_id in self.rules:
            return

        rule = Rule(data.model_id, data.principal_kind, data.principal_id)
        self.rules[data.rule_id] = rule
        self._count(rule, +1)

    def _access_revoked(self, data: ev.AccessRevoked, _envelope: Envelope) -> None:
        rule = self.rules.pop(data.rule_id, None)
        if rule is not None:
            self._count(rule, -1)

    def _count(self, rule: Rule, delta: int) -> None:
        grants = self.grants.setdefault(rule.model_id, Grants())
        if rule.kind == "workspace":
            grants.workspace += delta
        elif rule.kind == "group":
            grants.groups[rule.principal_id] += delta
        else:
            grants.users[rule.principal_id] += delta


_HANDLERS: dict[type[ev.EventData], Any] = {
    ev.TokenIssued: View._token_issued,
    ev.TokenRevoked: View._token_revoked,
    ev.MemberAdded: View._member_added,
    ev.MemberDeactivated: View._member_deactivated,
    ev.GroupCreated: View._group_created,
    ev.GroupMemberAdded: View._group_member_added,
    ev.GroupMemberRemoved: View._group_member_removed,
    ev.ProviderConnected: View._provider_connected,
    ev.ProviderDisconnected: View._provider_disconnected,
    ev.WorkspaceSettingsChanged: View._workspace_settings_changed,
    ev.ModelDiscovered: View._model_discovered,
    ev.ModelUpdated: View._model_updated,
    ev.ModelEnabled: View._model_flag,
    ev.ModelDisabled: View._model_flag,
    ev.ModelRetired: View._model_flag,
    ev.AccessGranted: View._access_granted,
    ev.AccessRevoked: View._access_revoked,
}
