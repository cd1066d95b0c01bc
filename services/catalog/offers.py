"""Managed models: the install operator's models, offered to workspaces.

The operator connects providers at install level (keyvault's install routes); their
models are listed like any connection's, under the install. Offering one to a workspace
gives that workspace an entry of its own for it: a model row with ``source`` "managed",
named ``managed/<install connection>/<upstream id>``, with its own id, disabled until
the workspace's admin enables it and granted by the workspace's own rules. A
``model.discovered`` event naming the workspace tells access and the proxy, which then
treat it as they treat the workspace's own models; calls go through the install
connection's key.

An offer names its workspaces or all of them; "all" reaches workspaces created later
too, as the catalog hears of them from access (:meth:`Offers.workspace_created`).
Narrowing an offer withdraws the entries of the workspaces left out
(``model.withdrawn``): they stop being callable, and their ids stay in rules and
history. Offered again, an entry comes back disabled under the same id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalog.domain import INSTALL_SCOPE, MANAGED, Audience, offer_changes
from services.catalog.errors import ModelNotFound, Refused, UnknownWorkspaces
from services.catalog.tables import (
    DETAIL_COLUMNS,
    connections,
    details_of,
    models,
    offers,
    workspaces,
)
from services.catalog.writer import discovered_event
from shared.db import upsert
from shared.events import schemas as ev
from shared.events.envelope import utcnow
from shared.events.store import Actor
from shared.runtime import Runtime

log = structlog.get_logger(__name__)


async def _serialise_offers(conn: AsyncConnection) -> None:
    """Make offers and new workspaces wait for each other.

    An offer to all workspaces reads the workspaces known, and a new workspace reads the
    offers made: run side by side, each would miss the other's uncommitted row, and the
    new workspace would never get the model. The lock conflicts with itself only; offers
    and new workspaces are rare. SQLite already lets one writer at a time hold the database.
    """
    if conn.dialect.name == "postgresql":
        await conn.execute(text('LOCK TABLE "catalog"."offers" IN SHARE ROW EXCLUSIVE MODE'))


@dataclass(frozen=True, slots=True)
class OfferResult:
    """Who the model is offered to now, and what the change did."""

    model_id: str
    audience: Audience
    offered_to: tuple[str, ...]
    withdrawn_from: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _InstallConnection:
    id: str
    name: str
    provider: str


class Offers:
    """The operator's offers of install models to workspaces."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def offer(
        self, model_id: str, audience: Audience, *, actor_id: str, correlation_id: str | None
    ) -> OfferResult:
        """Offer an install model to exactly ``audience``; an empty audience withdraws it."""
        async with self._runtime.engine.begin() as conn:
            await _serialise_offers(conn)
            model = await self._install_model(conn, model_id)
            if model.retired and (audience.all_workspaces or audience.workspace_ids):
                raise Refused(
                    "model_retired", f"model {model_id!r} is retired: it cannot be offered"
                )

            reached = await self._workspaces(conn, audience)
            await self._record(conn, model_id, audience)
            entries = await self._entries(conn, model_id)
            gain, lose = offer_changes(
                audience, reached, {w: e.withdrawn for w, e in entries.items()}
            )
            pending: list[tuple[str, ev.ModelEvent, Actor]] = []
            for workspace_id in gain:
                entry_id = await self._open(conn, model, entries.get(workspace_id), workspace_id)
                pending.append(
                    (
                        entry_id,
                        self._discovered(entry_id, model),
                        Actor(workspace_id, actor_id, correlation_id),
                    )
                )
            for workspace_id in lose:
                entry = entries[workspace_id]
                await conn.execute(
                    update(models)
                    .where(models.c.id == entry.id)
                    .values(withdrawn=True, enabled=False, updated_at=utcnow())
                )
                withdrawn = ev.ModelWithdrawn(model_id=entry.id, connection_id=model.connection)
                pending.append((entry.id, withdrawn, Actor(workspace_id, actor_id, correlation_id)))
            # Rows first, events last (see shared.events.store).
            for entry_id, data, actor in pending:
                await self._runtime.store.append(conn, f"model-{entry_id}", [data], actor=actor)

        if pending:
            self._runtime.events_committed()
        log.info("model_offered", model_id=model_id, gained=len(gain), withdrawn=len(lose))
        return OfferResult(model_id, audience, tuple(gain), tuple(lose))

    async def workspace_created(
        self, conn: AsyncConnection, workspace_id: str, at: datetime, actor: Actor
    ) -> int:
        """Record a new workspace and give it every model offered to all workspaces."""
        await _serialise_offers(conn)
        statement = upsert(conn, workspaces).values(id=workspace_id, created_at=at)
        await conn.execute(statement.on_conflict_do_nothing())
        query = (
            select(offers.c.model_id)
            .join(models, models.c.id == offers.c.model_id)
            .where(offers.c.all_workspaces.is_(True), models.c.retired.is_(False))
            .order_by(offers.c.model_id)
        )
        offered = list((await conn.execute(query)).scalars())
        pending: list[tuple[str, ev.ModelEvent]] = []
        for model_id in offered:
            model = await self._install_model(conn, model_id)
            entry_id = await self._open(conn, model, None, workspace_id)
            pending.append((entry_id, self._discovered(entry_id, model)))
        for entry_id, data in pending:
            await self._runtime.store.append(conn, f"model-{entry_id}", [data], actor=actor)
        return len(pending)

    async def _install_model(self, conn: AsyncConnection, model_id: str) -> Any:
        query = (
            select(
                models.c.id,
                models.c.name,
                models.c.connection,
                models.c.upstream_id,
                models.c.owned_by,
                models.c.provider,
                models.c.retired,
                connections.c.name.label("connection_name"),
                *DETAIL_COLUMNS,
            )
            .join(connections, connections.c.id == models.c.connection)
            .where(models.c.id == model_id, models.c.workspace == INSTALL_SCOPE)
            .with_for_update(of=models)
        )
        row = (await conn.execute(query)).first()
        if row is None:
            raise ModelNotFound(model_id)

        return row

    async def _workspaces(self, conn: AsyncConnection, audience: Audience) -> list[str]:
        """The workspaces the audience reaches now; naming an unknown one is refused."""
        query = select(workspaces.c.id).order_by(workspaces.c.id)
        if not audience.all_workspaces:
            query = query.where(workspaces.c.id.in_(audience.workspace_ids))
        known = list((await conn.execute(query)).scalars())
        unknown = sorted(set(audience.workspace_ids) - set(known))
        if unknown and not audience.all_workspaces:
            raise UnknownWorkspaces(unknown)

        return known

    async def _record(self, conn: AsyncConnection, model_id: str, audience: Audience) -> None:
        values = {
            "all_workspaces": audience.all_workspaces,
            "workspace_ids": list(audience.workspace_ids),
            "updated_at": utcnow(),
        }
        statement = upsert(conn, offers).values(model_id=model_id, **values)
        await conn.execute(
            statement.on_conflict_do_update(index_elements=[offers.c.model_id], set_=values)
        )

    async def _entries(self, conn: AsyncConnection, model_id: str) -> dict[str, Any]:
        query = (
            select(models.c.id, models.c.workspace, models.c.withdrawn)
            .where(models.c.offer_of == model_id)
            .order_by(models.c.id)
            .with_for_update()
        )
        return {row.workspace: row for row in await conn.execute(query)}

    async def _open(
        self, conn: AsyncConnection, model: Any, entry: Any | None, workspace_id: str
    ) -> str:
        """The workspace's entry for the model, fresh or back from withdrawal, disabled."""
        now = utcnow()
        description = {column.name: getattr(model, column.name) for column in DETAIL_COLUMNS}
        values = {
            "owned_by": model.owned_by,
            "enabled": False,
            "retired": False,
            "retired_at": None,
            "withdrawn": False,
            "updated_at": now,
            **description,
        }
        if entry is not None:
            await conn.execute(update(models).where(models.c.id == entry.id).values(**values))
            return str(entry.id)

        entry_id = str(uuid.uuid4())
        await conn.execute(
            insert(models).values(
                id=entry_id,
                workspace=workspace_id,
                connection=model.connection,
                upstream_id=model.upstream_id,
                name=model.name,
                provider=model.provider,
                source=MANAGED,
                offer_of=model.id,
                discovered_at=now,
                **values,
            )
        )
        return entry_id

    def _discovered(self, entry_id: str, model: Any) -> ev.ModelDiscovered:
        connection = _InstallConnection(model.connection, model.connection_name, model.provider)
        return discovered_event(
            entry_id,
            connection,
            model.upstream_id,
            model.owned_by,
            details_of(model),
            source=MANAGED,
        )
