"""The catalog's rules, free of frameworks: what a fresh model listing changes, and when a
model may be switched on or off.

A sync compares what the provider offers now with what the catalog already knows about
the connection. Only real differences become events, so a sync that finds nothing new
says nothing. A model that disappears upstream is retired, not deleted: its id stays
valid in access rules and usage history, and if the provider offers it again it comes
back under the same id, disabled, as a fresh discovery.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

# A failure reason is shown to admins; a provider's explanation is short, ours shorter.
MAX_REASON_LENGTH = 300


@dataclass(frozen=True, slots=True)
class OfferedModel:
    """One model as the provider lists it now."""

    upstream_id: str
    owned_by: str | None = None


@dataclass(frozen=True, slots=True)
class KnownModel:
    """One model the catalog already holds for the connection."""

    id: str
    upstream_id: str
    owned_by: str | None
    retired: bool


@dataclass(frozen=True, slots=True)
class Reappeared:
    """A retired model the provider offers again."""

    model: KnownModel
    offered: OfferedModel


@dataclass(frozen=True, slots=True)
class OwnerChanged:
    """A model whose owner, as the provider states it, is not what the catalog recorded."""

    model: KnownModel
    owned_by: str | None


@dataclass(frozen=True, slots=True)
class CatalogDiff:
    """What a listing changes about one connection's models."""

    discovered: tuple[OfferedModel, ...] = ()
    reappeared: tuple[Reappeared, ...] = ()
    owner_changed: tuple[OwnerChanged, ...] = ()
    retired: tuple[KnownModel, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.discovered or self.reappeared or self.owner_changed or self.retired)


def diff_models(known: Iterable[KnownModel], offered: Iterable[OfferedModel]) -> CatalogDiff:
    """Compare the provider's listing with the catalog's; unchanged models are left out."""
    known_by_upstream = {model.upstream_id: model for model in known}
    offered_by_upstream = _first_of_each(offered)

    discovered: list[OfferedModel] = []
    reappeared: list[Reappeared] = []
    owner_changed: list[OwnerChanged] = []
    for upstream_id, offer in offered_by_upstream.items():
        model = known_by_upstream.get(upstream_id)
        if model is None:
            discovered.append(offer)
        elif model.retired:
            reappeared.append(Reappeared(model, offer))
        elif model.owned_by != offer.owned_by:
            owner_changed.append(OwnerChanged(model, offer.owned_by))

    retired = [
        model
        for upstream_id, model in sorted(known_by_upstream.items())
        if not model.retired and upstream_id not in offered_by_upstream
    ]
    return CatalogDiff(
        discovered=tuple(discovered),
        reappeared=tuple(reappeared),
        owner_changed=tuple(owner_changed),
        retired=tuple(retired),
    )


def _first_of_each(offered: Iterable[OfferedModel]) -> dict[str, OfferedModel]:
    # A provider that lists one id twice (a paging glitch) still has one model by that id.
    by_upstream: dict[str, OfferedModel] = {}
    for offer in offered:
        by_upstream.setdefault(offer.upstream_id, offer)
    return by_upstream


def model_name(connection_name: str, upstream_id: str) -> str:
    """The name members call a model by: unique in the workspace, as connection names are."""
    return f"{connection_name}/{upstream_id}"


class Switch(enum.Enum):
    """What asking to enable or disable a model amounts to."""

    CHANGE = "change"
    ALREADY = "already"
    RETIRED = "retired"


def decide_switch(*, enabled: bool, retired: bool, enable: bool) -> Switch:
    """A retired model cannot be enabled; asking for the current state changes nothing."""
    if enable and retired:
        return Switch.RETIRED

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
