"""The catalog's rules, free of frameworks: what a fresh model listing changes, and when a
model may be switched on or off.

A sync compares what the provider offers now with what the catalog already knows about
the connection. Only real differences become events, so a sync that finds nothing new
says nothing. A model that disappears upstream is retired, not deleted: its id stays
valid in access rules and usage history, and if the provider offers it again it comes
back under the same id, disabled, as a fresh discovery.

A model's description (display name, context window, modalities, tools, price) is part
of what a sync compares: a provider that starts stating a larger context window, or an
operator's data file that changes a price, is an update like a changed owner.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

# A failure reason is shown to admins; a provider's explanation is short, ours shorter.
MAX_REASON_LENGTH = 300


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens."""

    input: float
    output: float
    cached_input: float | None = None


@dataclass(frozen=True, slots=True)
class ModelDetails:
    """What is known about a model besides its id; every part may be unknown.

    ``price`` None is "price unknown", never "free". ``successor`` is the upstream id of
    the model that replaces this one, on the same connection.
    """

    display_name: str | None = None
    family: str | None = None
    context_window: int | None = None
    input_modalities: tuple[str, ...] = ()
    output_modalities: tuple[str, ...] = ()
    supports_tools: bool | None = None
    price: Price | None = None
    successor: str | None = None

    @property
    def capabilities(self) -> tuple[str, ...]:
        """The tags the read API filters on, derived from modalities and tool support."""
        tags = []
        if self.supports_tools:
            tags.append("tools")
        if "image" in self.input_modalities:
            tags.append("vision")
        if "audio" in self.input_modalities or "audio" in self.output_modalities:
            tags.append("audio")
        if "image" in self.output_modalities:
            tags.append("image_output")
        if "embedding" in self.output_modalities:
            tags.append("embeddings")
        return tuple(tags)


CAPABILITIES = ("tools", "vision", "audio", "image_output", "embeddings")


@dataclass(frozen=True, slots=True)
class OfferedModel:
    """One model as the provider lists it now, described."""

    upstream_id: str
    owned_by: str | None = None
    details: ModelDetails = field(default_factory=ModelDetails)


@dataclass(frozen=True, slots=True)
class KnownModel:
    """One model the catalog already holds for the connection."""

    id: str
    upstream_id: str
    owned_by: str | None
    retired: bool
    details: ModelDetails = field(default_factory=ModelDetails)


@dataclass(frozen=True, slots=True)
class Reappeared:
    """A retired model the provider offers again."""

    model: KnownModel
    offered: OfferedModel


@dataclass(frozen=True, slots=True)
class Changed:
    """A model whose owner or description is not what the catalog recorded."""

    model: KnownModel
    offered: OfferedModel


@dataclass(frozen=True, slots=True)
class CatalogDiff:
    """What a listing changes about one connection's models."""

    discovered: tuple[OfferedModel, ...] = ()
    reappeared: tuple[Reappeared, ...] = ()
    changed: tuple[Changed, ...] = ()
    retired: tuple[KnownModel, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.discovered or self.reappeared or self.changed or self.retired)


def diff_models(known: Iterable[KnownModel], offered: Iterable[OfferedModel]) -> CatalogDiff:
    """Compare the provider's listing with the catalog's; unchanged models are left out."""
    known_by_upstream = {model.upstream_id: model for model in known}
    offered_by_upstream = _first_of_each(offered)

    discovered: list[OfferedModel] = []
    reappeared: list[Reappeared] = []
    changed: list[Changed] = []
    for upstream_id, offer in offered_by_upstream.items():
        model = known_by_upstream.get(upstream_id)
        if model is None:
            discovered.append(offer)
        elif model.retired:
            reappeared.append(Reappeared(model, offer))
        elif model.owned_by != offer.owned_by or model.details != offer.details:
            changed.append(Changed(model, offer))

    retired = [
        model
        for upstream_id, model in sorted(known_by_upstream.items())
        if not model.retired and upstream_id not in offered_by_upstream
    ]
    return CatalogDiff(
        discovered=tuple(discovered),
        reappeared=tuple(reappeared),
        changed=tuple(changed),
        retired=tuple(retired),
    )


def _first_of_each(offered: Iterable[OfferedModel]) -> dict[str, OfferedModel]:
    # A provider that lists one id twice (a paging glitch) still has one model by that id.
    by_upstream: dict[str, OfferedModel] = {}
    for offer in offered:
        by_upstream.setdefault(offer.upstream_id, offer)
    return by_upstream


# The catalog's owner of the install operator's connections and their models, in place
# of a workspace id (those are UUIDs). A workspace sees such a model only once it is offered.
INSTALL_SCOPE = "install"
BYOM = "byom"
MANAGED = "managed"
# Managed models are named under this prefix; keyvault keeps it from naming a connection.
MANAGED_PREFIX = "managed/"


def model_name(connection_name: str, upstream_id: str, source: str = BYOM) -> str:
    """The name members call a model by, unique in the workspace.

    A workspace's own model is ``<connection>/<upstream id>`` (connection names are unique
    in the workspace); a managed one is ``managed/<install connection>/<upstream id>``
    (install connection names are unique in the install, and no workspace connection may
    be named "managed"), so the two never collide, even for one upstream model.
    """
    name = f"{connection_name}/{upstream_id}"
    return MANAGED_PREFIX + name if source == MANAGED else name


# Aliases never contain "/", so an alias can never equal a model name.
_ALIAS = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


class InvalidAlias(ValueError):
    """A name that cannot be an alias."""


def check_alias(name: str) -> str:
    """An alias is exact: lowercase letters, digits, '.', '_' and '-', nothing to normalise."""
    if not _ALIAS.fullmatch(name):
        raise InvalidAlias(
            "an alias is 1 to 64 lowercase letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )

    return name


class TargetStatus(enum.Enum):
    """Whether an alias's model can be called: admins see every state but OK flagged."""

    OK = "ok"
    DISABLED = "disabled"
    RETIRED = "retired"
    WITHDRAWN = "withdrawn"


def target_status(*, enabled: bool, retired: bool, withdrawn: bool) -> TargetStatus:
    if retired:
        return TargetStatus.RETIRED

    if withdrawn:
        return TargetStatus.WITHDRAWN

    if not enabled:
        return TargetStatus.DISABLED

    return TargetStatus.OK


@dataclass(frozen=True, slots=True)
class Audience:
    """The workspaces an install model is offered to: all of them, or those named."""

    all_workspaces: bool = False
    workspace_ids: tuple[str, ...] = ()

    def includes(self, workspace_id: str) -> bool:
        return self.all_workspaces or workspace_id in self.workspace_ids


def offer_changes(
    audience: Audience, known_workspaces: Iterable[str], offered: dict[str, bool]
) -> tuple[list[str], list[str]]:
    """Which workspaces gain the model and which lose it.

    ``offered`` maps each workspace that has an entry for the model to whether the entry
    is withdrawn. A workspace that had the model withdrawn and is offered it again gains it.
    """
    wanted = [w for w in dict.fromkeys(known_workspaces) if audience.includes(w)]
    gain = [w for w in wanted if offered.get(w, True)]
    lose = sorted(w for w, withdrawn in offered.items() if not withdrawn and w not in wanted)
    return gain, lose


class NewModelAction(enum.Enum):
    """What a connection's syncs do with a model they discover for the first time."""

    DISABLED = "disabled"
    ENABLE_FOR_WORKSPACE = "enable_for_workspace"
    ENABLE_FOR_GROUPS = "enable_for_groups"


@dataclass(frozen=True, slots=True)
class NewModelPolicy:
    """A connection's policy for newly discovered models; the default keeps them off."""

    action: NewModelAction = NewModelAction.DISABLED
    group_ids: tuple[str, ...] = ()

    @property
    def enables(self) -> bool:
        return self.action is not NewModelAction.DISABLED


class InvalidPolicy(ValueError):
    """A policy that cannot be applied as stated."""


def new_model_policy(action: str, group_ids: Iterable[str]) -> NewModelPolicy:
    """A policy from what an admin sent: groups are named for, and only for, group grants."""
    chosen = NewModelAction(action)
    groups = tuple(dict.fromkeys(group_ids))
    if chosen is NewModelAction.ENABLE_FOR_GROUPS and not groups:
        raise InvalidPolicy("enable_for_groups needs at least one group id")

    if chosen is not NewModelAction.ENABLE_FOR_GROUPS and groups:
        raise InvalidPolicy(f"group_ids only go with enable_for_groups, not {chosen.value}")

    return NewModelPolicy(chosen, groups)


class Switch(enum.Enum):
    """What asking to enable or disable a model amounts to."""

    CHANGE = "change"
    ALREADY = "already"
    RETIRED = "retired"
    WITHDRAWN = "withdrawn"


def decide_switch(*, enabled: bool, retired: bool, enable: bool, withdrawn: bool = False) -> Switch:
    """A retired or withdrawn model cannot be enabled; asking for the current state changes
    nothing."""
    if enable and retired:
        return Switch.RETIRED

    if enable and withdrawn:
        return Switch.WITHDRAWN

    if enabled == enable:
        return Switch.ALREADY

    return Switch.CHANGE


@dataclass(frozen=True, slots=True)
class Listing:
    """The provider's answer, fetched outside any transaction."""

    started_at: datetime
    models: tuple[OfferedModel, ...]


@dataclass(frozen=True, slots=True)
class ListingFailed:
    """Why a listing could not be had; it changes no model."""

    started_at: datetime
    reason: str


Fetched = Listing | ListingFailed


def failure_reason(text: str) -> str:
    """A reason short enough to store and show; the text is already free of key material."""
    text = " ".join(text.split())
    if len(text) <= MAX_REASON_LENGTH:
        return text

    return text[: MAX_REASON_LENGTH - 1] + "…"


def is_superseded(fetch_started_at: datetime, last_sync_at: datetime | None) -> bool:
    """A listing fetched before the latest recorded sync began is older than what is applied.

    Two syncs of one connection can overlap (an admin's and a key rotation's); applying
    the older listing last would flip models back and forth.
    """
    return last_sync_at is not None and last_sync_at > fetch_started_at


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one sync did, as recorded on the connection and answered to an admin."""

    connection_id: str
    synced_at: datetime
    ok: bool
    reason: str | None = None
    discovered: int = 0
    updated: int = 0
    retired: int = 0
    superseded: bool = False
