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

Names are matched exactly, as the catalog wrote them: no case folding, trimming, prefix
or pattern, so no spelling reaches a model but its own name (or an alias of it). A
workspace's alias is looked up only when no model has the name (model names always hold
a "/", aliases never do), and then the alias's model is decided exactly as if it had
been named: an alias grants nothing. Managed models (offered by the install's operator)
are refused in a workspace that uses its own models only, and the workspace's own in one
that uses managed models only.
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
    # "byom" or "managed": whose connection carries the calls, for usage and the setting.
    source: str = "byom"
    withdrawn: bool = False


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
    SOURCE_EXCLUDED = "source_excluded"


@dataclass(frozen=True, slots=True)
class Retired:
    """A refusal of a retired model, naming what replaces it when that is known.

    ``alias_of`` is the retired model's name when the caller named it by an alias.
    """

    successor: str | None = None
    alias_of: str | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """A permitted call: which model, on which connection, and the alias it was named by."""

    model: Model
    connection: Connection
    alias: str | None = None


# Which sources each workspace setting excludes; "both" (the default) excludes none.
_EXCLUDED_SOURCE = {"byom_only": "managed", "managed_only": "byom"}


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
        # (workspace, alias) -> model id.
        self.aliases: dict[tuple[str, str], str] = {}
        # Workspaces that exclude one source of models -> the source they exclude.
        self.excluded_source: dict[str, str] = {}

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
        key = (caller.workspace_id, model_name)
        alias = None
        model_id = self.model_names.get(key)
        if model_id is None:
            model_id = self.aliases.get(key)
            if model_id is None:
                return Refusal.UNKNOWN_MODEL
            alias = model_name

        model = self.models.get(model_id)
        if model is None or model.withdrawn or model.workspace_id != caller.workspace_id:
            return Refusal.UNKNOWN_MODEL

        if model.retired:
            return Retired(model.successor, model.name if alias else None)

        if not model.enabled:
            return Refusal.MODEL_DISABLED

        connection = self.connections.get(model.connection_id)
        if connection is None or not connection.active:
            return Refusal.CONNECTION_INACTIVE

        if self.excluded_source.get(caller.workspace_id) == model.source:
            return Refusal.SOURCE_EXCLUDED

        if not self._granted(caller, model_id):
            return Refusal.NOT_GRANTED

        if model.price_unknown and caller.workspace_id in self.unpriced_refused:
            return Refusal.PRICE_UNKNOWN

        return Route(model, connection, alias)

    def usable_models(self, caller: Caller) -> list[Model]:
        return [model for name, model in self.usable_names(caller) if name == model.name]

    def usable_names(self, caller: Caller) -> list[tuple[str, Model]]:
        """Every name the caller may call, models and aliases, each with its model, by name."""
        usable = []
        for model in self.models.values():
            if model.workspace_id != caller.workspace_id:
                continue
            if isinstance(self.route(caller, model.name), Route):
                usable.append((model.name, model))
        for (workspace_id, alias), model_id in self.aliases.items():
            if workspace_id != caller.workspace_id:
                continue
            if isinstance(self.route(caller, alias), Route):
                usable.append((alias, self.models[model_id]))
        return sorted(usable, key=lambda pair: pair[0])

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
        if data.model_sources is not None:
            excluded = _EXCLUDED_SOURCE.get(data.model_sources)
            if excluded is None:
                self.excluded_source.pop(workspace_id, None)
            else:
                self.excluded_source[workspace_id] = excluded

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
        workspace_id = envelope.workspaceid
        if workspace_id is None:
            # The install's own models: a workspace reaches one only through its entry.
            return

        self.models[data.model_id] = Model(
            data.model_id,
            workspace_id,
            data.connection_id,
            data.model_name,
            data.upstream_id,
            data.provider,
            created=int(envelope.time.timestamp()),
            price_unknown=data.details is None or data.details.price is None,
            source=data.source or "byom",
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
        elif isinstance(data, ev.ModelWithdrawn):
            model.withdrawn = True
            model.enabled = False

    def _alias_set(self, data: ev.AliasSet, envelope: Envelope) -> None:
        self.aliases[(envelope.workspaceid or "", data.alias)] = data.model_id

    def _alias_removed(self, data: ev.AliasRemoved, envelope: Envelope) -> None:
        self.aliases.pop((envelope.workspaceid or "", data.alias), None)

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
    ev.ModelWithdrawn: View._model_flag,
    ev.AliasSet: View._alias_set,
    ev.AliasRemoved: View._alias_removed,
    ev.AccessGranted: View._access_granted,
    ev.AccessRevoked: View._access_revoked,
}
