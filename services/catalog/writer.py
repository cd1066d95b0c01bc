"""Writing what a sync found: each model's row and its event, in the sync's transaction.

New models are inserted (enabled, with the grant the connection's policy asks for, when
it has one), models back from retirement are switched off again, changed ones updated,
and vanished ones retired with the successor their description names. Events carry
successors as gateway names (``<connection>/<upstream id>``), which is what members call.

A sync of an install connection also carries what it found to every workspace the model
is offered to: each (not withdrawn) managed entry is updated, retired or brought back
with its install model, and each such event names the entry's workspace.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalog.domain import (
    BYOM,
    INSTALL_SCOPE,
    MANAGED,
    CatalogDiff,
    Changed,
    KnownModel,
    ModelDetails,
    NewModelAction,
    NewModelPolicy,
    OfferedModel,
    Reappeared,
    model_name,
)
from services.catalog.tables import detail_columns, models
from shared.events import schemas as ev
from shared.events.envelope import utcnow
from shared.events.store import Actor
from shared.runtime import Runtime


class DiffWriter:
    """Writes one diff: each model's row and its event, in the caller's transaction."""

    def __init__(
        self, runtime: Runtime, conn: AsyncConnection, connection: Any, actor: Actor
    ) -> None:
        self._store = runtime.store
        self._conn = conn
        self._connection = connection
        self._actor = actor
        self._now = utcnow()
        self._policy = NewModelPolicy(
            NewModelAction(connection.new_model_action), tuple(connection.new_model_group_ids)
        )
        self._events: list[tuple[str, ev.ModelEvent, int | None, Actor]] = []
        # The install's own models are named as workspaces will see them once offered.
        self._source = MANAGED if connection.workspace == INSTALL_SCOPE else BYOM

    async def write(self, diff: CatalogDiff) -> None:
        for offer in diff.discovered:
            await self._discover(offer)
        for back in diff.reappeared:
            await self._rediscover(back)
        for change in diff.changed:
            await self._change(change)
        for model in diff.retired:
            await self._retire(model)
        if self._connection.workspace == INSTALL_SCOPE:
            await self._follow_offers(diff)
        # Rows first, events last: appending takes the events table's lock, and a
        # transaction holding it must not then wait for a row that an enable or disable
        # holds while it waits for the same lock.
        for model_id, data, expected_version, actor in self._events:
            await self._store.append(
                self._conn,
                f"model-{model_id}",
                [data],
                actor=actor,
                expected_version=expected_version,
            )

    def _queue(self, model_id: str, data: ev.ModelEvent, expected: int | None = None) -> None:
        self._events.append((model_id, data, expected, self._actor))

    async def _follow_offers(self, diff: CatalogDiff) -> None:
        """Carry the install models' changes to the workspaces they are offered to."""
        changed = {c.model.id: c.offered for c in diff.changed}
        back = {r.model.id: r.offered for r in diff.reappeared}
        retired = {m.id: m for m in diff.retired}
        followed = [*changed, *back, *retired]
        if not followed:
            return

        query = (
            select(models.c.id, models.c.workspace, models.c.offer_of)
            .where(models.c.offer_of.in_(followed), models.c.withdrawn.is_(False))
            .order_by(models.c.id)
        )
        for entry in (await self._conn.execute(query)).all():
            actor = Actor(entry.workspace, self._actor.actor_id, self._actor.correlation_id)
            data: ev.ModelEvent
            if entry.offer_of in changed:
                offered = changed[entry.offer_of]
                await self._update(
                    entry.id, owned_by=offered.owned_by, **detail_columns(offered.details)
                )
                data = ev.ModelUpdated(
                    model_id=entry.id,
                    connection_id=self._connection.id,
                    owned_by=offered.owned_by,
                    details=self._details(offered.details),
                )
            elif entry.offer_of in back:
                offered = back[entry.offer_of]
                await self._update(
                    entry.id,
                    retired=False,
                    retired_at=None,
                    enabled=False,
                    owned_by=offered.owned_by,
                    **detail_columns(offered.details),
                )
                data = self._discovered(entry.id, offered)
            else:
                successor = retired[entry.offer_of].details.successor
                await self._update(entry.id, retired=True, enabled=False, retired_at=self._now)
                data = ev.ModelRetired(
                    model_id=entry.id,
                    connection_id=self._connection.id,
                    successor=self._name(successor) if successor else None,
                )
            self._events.append((entry.id, data, None, actor))

    async def _discover(self, offer: OfferedModel) -> None:
        model_id = str(uuid.uuid4())
        enable = self._policy.enables
        await self._conn.execute(
            insert(models).values(
                id=model_id,
                workspace=self._connection.workspace,
                connection=self._connection.id,
                upstream_id=offer.upstream_id,
                name=self._name(offer.upstream_id),
                owned_by=offer.owned_by,
                provider=self._connection.provider,
                source=self._source,
                enabled=enable,
                retired=False,
                discovered_at=self._now,
                updated_at=self._now,
                **detail_columns(offer.details),
            )
        )
        self._queue(model_id, self._discovered(model_id, offer), 0)
        if enable:
            # The grant is access's to make; the event carries what the policy asks for.
            enabled = ev.ModelEnabled(
                model_id=model_id, connection_id=self._connection.id, grant=self._auto_grant()
            )
            self._queue(model_id, enabled)

    async def _rediscover(self, back: Reappeared) -> None:
        # Back under its old id, so rules and history still point at it, but switched
        # off: the admin decides again whether to offer it, whatever the policy says.
        await self._update(
            back.model.id,
            retired=False,
            retired_at=None,
            enabled=False,
            owned_by=back.offered.owned_by,
            **detail_columns(back.offered.details),
        )
        self._queue(back.model.id, self._discovered(back.model.id, back.offered))

    async def _change(self, change: Changed) -> None:
        offered = change.offered
        await self._update(
            change.model.id, owned_by=offered.owned_by, **detail_columns(offered.details)
        )
        data = ev.ModelUpdated(
            model_id=change.model.id,
            connection_id=self._connection.id,
            owned_by=offered.owned_by,
            details=self._details(offered.details),
        )
        self._queue(change.model.id, data)

    async def _retire(self, model: KnownModel) -> None:
        # A retired model is off for good until the provider offers it again.
        await self._update(model.id, retired=True, enabled=False, retired_at=self._now)
        successor = model.details.successor
        data = ev.ModelRetired(
            model_id=model.id,
            connection_id=self._connection.id,
            successor=self._name(successor) if successor else None,
        )
        self._queue(model.id, data)

    def _discovered(self, model_id: str, offer: OfferedModel) -> ev.ModelDiscovered:
        return discovered_event(
            model_id,
            self._connection,
            offer.upstream_id,
            offer.owned_by,
            offer.details,
            source=self._source,
        )

    def _details(self, details: ModelDetails) -> ev.ModelDetails:
        return event_details(details, self._connection.name, self._source)

    def _auto_grant(self) -> ev.AutoGrant:
        if self._policy.action is NewModelAction.ENABLE_FOR_GROUPS:
            return ev.AutoGrant(principal_kind="group", group_ids=list(self._policy.group_ids))

        return ev.AutoGrant(principal_kind="workspace")

    def _name(self, upstream_id: str) -> str:
        return model_name(self._connection.name, upstream_id, self._source)

    async def _update(self, model_id: str, **values: Any) -> None:
        await self._conn.execute(
            update(models).where(models.c.id == model_id).values(updated_at=self._now, **values)
        )


def discovered_event(
    model_id: str,
    connection: Any,
    upstream_id: str,
    owned_by: str | None,
    details: ModelDetails,
    *,
    source: str,
) -> ev.ModelDiscovered:
    """A model's discovery as the rest of the gateway hears it, under its gateway name."""
    return ev.ModelDiscovered(
        model_id=model_id,
        connection_id=connection.id,
        model_name=model_name(connection.name, upstream_id, source),
        upstream_id=upstream_id,
        provider=connection.provider,
        owned_by=owned_by,
        details=event_details(details, connection.name, source),
        source="managed" if source == MANAGED else None,
    )


def event_details(details: ModelDetails, connection_name: str, source: str) -> ev.ModelDetails:
    """A description as events carry it: prices as they are, a successor by gateway name."""
    price = details.price
    return ev.ModelDetails(
        display_name=details.display_name,
        family=details.family,
        context_window=details.context_window,
        input_modalities=list(details.input_modalities),
        output_modalities=list(details.output_modalities),
        supports_tools=details.supports_tools,
        price=(
            ev.ModelPrice(input=price.input, output=price.output, cached_input=price.cached_input)
            if price
            else None
        ),
        successor=(
            model_name(connection_name, details.successor, source) if details.successor else None
        ),
    )
