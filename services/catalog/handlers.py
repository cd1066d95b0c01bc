"""The catalog's commands: record connections, apply model listings, switch models on and off.

Each command loads what it needs under a row lock, decides with ``domain``, and saves the
rows and their events in one transaction; the relay is woken after the commit. Network
calls (keyvault, the provider) happen before the transaction opens, in ``upstream``.
The steps that take a connection run inside the caller's transaction, so the event
consumer can run them inside ``Projection.apply_once``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalog import views
from services.catalog.domain import (
    CatalogDiff,
    Fetched,
    KnownModel,
    ListingFailed,
    OfferedModel,
    OwnerChanged,
    Reappeared,
    Switch,
    SyncResult,
    decide_switch,
    diff_models,
    is_superseded,
    model_name,
)
from services.catalog.errors import ConnectionDisconnected, ConnectionNotFound, ModelNotFound
from services.catalog.tables import CONNECTION_ACTIVE, CONNECTION_DISCONNECTED, connections, models
from services.catalog.upstream import ModelSource
from shared.db import upsert
from shared.events.envelope import utcnow
from shared.events.schemas import (
    ModelDisabled,
    ModelDiscovered,
    ModelEnabled,
    ModelRetired,
    ModelUpdated,
)
from shared.events.store import Actor
from shared.runtime import Runtime

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class NewConnection:
    """A connection as keyvault announced it."""

    id: str
    workspace_id: str
    provider: str
    name: str
    base_url: str


@dataclass(frozen=True, slots=True)
class SwitchOutcome:
    decision: Switch
    model: views.ModelView


class Catalog:
    """The catalog's write side, built once at start-up."""

    def __init__(self, runtime: Runtime, source: ModelSource) -> None:
        self._runtime = runtime
        self._source = source

    async def fetch(self, connection_id: str, workspace_id: str) -> Fetched:
        """The network half of a sync; never inside a transaction."""
        return await self._source.fetch(connection_id, workspace_id)

    async def sync(self, connection_id: str, *, workspace_id: str, actor: Actor) -> SyncResult:
        """Sync one connection now, as an admin asked."""
        async with self._runtime.engine.connect() as conn:
            connection = await views.get_connection(conn, workspace_id, connection_id)
        if connection is None:
            raise ConnectionNotFound(connection_id)

        if connection.status != CONNECTION_ACTIVE:
            raise ConnectionDisconnected(connection_id)

        fetched = await self.fetch(connection_id, workspace_id)

        async with self._runtime.engine.begin() as conn:
            result = await self.apply_fetched(conn, connection_id, fetched, actor)

        self._runtime.events_committed()
        return result

    async def switch(
        self, model_id: str, *, workspace_id: str, enable: bool, actor: Actor
    ) -> SwitchOutcome:
        """Enable or disable a model; an event only when its state really changes."""
        async with self._runtime.engine.begin() as conn:
            query = (
                select(models.c.enabled, models.c.retired, models.c.connection)
                .where(models.c.id == model_id, models.c.workspace == workspace_id)
                .with_for_update()
            )
            row = (await conn.execute(query)).first()
            if row is None:
                raise ModelNotFound(model_id)

            decision = decide_switch(enabled=row.enabled, retired=row.retired, enable=enable)
            if decision is Switch.CHANGE:
                await self._save_switch(conn, model_id, row.connection, enable, actor)

            model = await views.get_model(conn, workspace_id, model_id)
            if model is None:
                raise ModelNotFound(model_id)

        if decision is Switch.CHANGE:
            self._runtime.events_committed()
            log.info("model_switched", model_id=model_id, enabled=enable)
        return SwitchOutcome(decision, model)

    async def connection_status(self, connection_id: str) -> str | None:
        """``active`` or ``disconnected``; None for a connection the catalog never heard of."""
        query = select(connections.c.status).where(connections.c.id == connection_id)
        async with self._runtime.engine.connect() as conn:
            status: str | None = (await conn.execute(query)).scalar_one_or_none()
        return status

    async def record_connection(self, conn: AsyncConnection, connection: NewConnection) -> None:
        """Remember a connection keyvault announced; a reconnect under one id reactivates it."""
        values = {
            "workspace": connection.workspace_id,
            "provider": connection.provider,
            "name": connection.name,
            "base_url": connection.base_url,
            "status": CONNECTION_ACTIVE,
        }
        statement = upsert(conn, connections).values(id=connection.id, **values)
        statement = statement.on_conflict_do_update(index_elements=[connections.c.id], set_=values)
        await conn.execute(statement)

    async def mark_disconnected(self, conn: AsyncConnection, connection_id: str) -> None:
        # Its models stay as they are: their ids live on in rules and usage, and the
        # gateway refuses calls to a disconnected connection on its own.
        await conn.execute(
            update(connections)
            .where(connections.c.id == connection_id)
            .values(status=CONNECTION_DISCONNECTED)
        )

    async def apply_fetched(
        self, conn: AsyncConnection, connection_id: str, fetched: Fetched, actor: Actor
    ) -> SyncResult:
        """The database half of a sync: models, events and the sync record, in ``conn``."""
        connection = await self._lock_connection(conn, connection_id)
        if connection.status != CONNECTION_ACTIVE:
            return SyncResult(
                connection_id, fetched.started_at, ok=False, reason="the connection is disconnected"
            )

        if is_superseded(fetched.started_at, connection.last_sync_at):
            return SyncResult(
                connection_id,
                connection.last_sync_at,
                ok=bool(connection.last_sync_ok),
                reason=connection.last_sync_reason,
                superseded=True,
            )

        if isinstance(fetched, ListingFailed):
            await self._record_sync(conn, connection_id, fetched.started_at, reason=fetched.reason)
            log.warning("models_sync_failed", connection_id=connection_id, reason=fetched.reason)
            return SyncResult(connection_id, fetched.started_at, ok=False, reason=fetched.reason)

        diff = diff_models(await self._known_models(conn, connection_id), fetched.models)
        await _DiffWriter(self._runtime, conn, connection, actor).write(diff)
        await self._record_sync(conn, connection_id, fetched.started_at, reason=None)
        result = SyncResult(
            connection_id,
            fetched.started_at,
            ok=True,
            discovered=len(diff.discovered) + len(diff.reappeared),
            updated=len(diff.owner_changed),
            retired=len(diff.retired),
        )
        log.info(
            "models_synced",
            connection_id=connection_id,
            offered=len(fetched.models),
            discovered=result.discovered,
            updated=result.updated,
            retired=result.retired,
        )
        return result

    async def _lock_connection(self, conn: AsyncConnection, connection_id: str) -> Any:
        # The lock makes overlapping syncs of one connection apply one after the other.
        query = select(connections).where(connections.c.id == connection_id).with_for_update()
        row = (await conn.execute(query)).first()
        if row is None:
            raise ConnectionNotFound(connection_id)

        return row

    async def _known_models(self, conn: AsyncConnection, connection_id: str) -> list[KnownModel]:
        query = select(
            models.c.id, models.c.upstream_id, models.c.owned_by, models.c.retired
        ).where(models.c.connection == connection_id)
        return [KnownModel(**row._mapping) for row in await conn.execute(query)]

    async def _record_sync(
        self, conn: AsyncConnection, connection_id: str, at: datetime, *, reason: str | None
    ) -> None:
        await conn.execute(
            update(connections)
            .where(connections.c.id == connection_id)
            .values(last_sync_at=at, last_sync_ok=reason is None, last_sync_reason=reason)
        )

    async def _save_switch(
        self, conn: AsyncConnection, model_id: str, connection_id: str, enable: bool, actor: Actor
    ) -> None:
        await conn.execute(
            update(models)
            .where(models.c.id == model_id)
            .values(enabled=enable, updated_at=utcnow())
        )
        event = ModelEnabled if enable else ModelDisabled
        data = event(model_id=model_id, connection_id=connection_id)
        await self._runtime.store.append(conn, f"model-{model_id}", [data], actor=actor)


class _DiffWriter:
    """Writes one diff: each model's row and its event, in the caller's transaction."""

    def __init__(
        self, runtime: Runtime, conn: AsyncConnection, connection: Any, actor: Actor
    ) -> None:
        self._store = runtime.store
        self._conn = conn
        self._connection = connection
        self._actor = actor
        self._now = utcnow()
        self._events: list[
            tuple[str, ModelDiscovered | ModelUpdated | ModelRetired, int | None]
        ] = []

    async def write(self, diff: CatalogDiff) -> None:
        for offer in diff.discovered:
            await self._discover(offer)
        for back in diff.reappeared:
            await self._rediscover(back)
        for change in diff.owner_changed:
            await self._change_owner(change)
        for model in diff.retired:
            await self._retire(model)
        # Rows first, events last: appending takes the events table's lock, and a
        # transaction holding it must not then wait for a row that an enable or disable
        # holds while it waits for the same lock.
        for model_id, data, expected_version in self._events:
            await self._store.append(
                self._conn,
                f"model-{model_id}",
                [data],
                actor=self._actor,
                expected_version=expected_version,
            )

    async def _discover(self, offer: OfferedModel) -> None:
        model_id = str(uuid.uuid4())
        name = model_name(self._connection.name, offer.upstream_id)
        await self._conn.execute(
            insert(models).values(
                id=model_id,
                workspace=self._connection.workspace,
                connection=self._connection.id,
                upstream_id=offer.upstream_id,
                name=name,
                owned_by=offer.owned_by,
                enabled=False,
                retired=False,
                discovered_at=self._now,
                updated_at=self._now,
            )
        )
        await self._append(model_id, self._discovered(model_id, offer), expected_version=0)

    async def _rediscover(self, back: Reappeared) -> None:
        # Back under its old id, so rules and history still point at it, but switched
        # off: the admin decides again whether to offer it.
        await self._update(
            back.model.id, retired=False, enabled=False, owned_by=back.offered.owned_by
        )
        await self._append(back.model.id, self._discovered(back.model.id, back.offered))

    async def _change_owner(self, change: OwnerChanged) -> None:
        await self._update(change.model.id, owned_by=change.owned_by)
        data = ModelUpdated(
            model_id=change.model.id, connection_id=self._connection.id, owned_by=change.owned_by
        )
        await self._append(change.model.id, data)

    async def _retire(self, model: KnownModel) -> None:
        # A retired model is off for good until the provider offers it again.
        await self._update(model.id, retired=True, enabled=False)
        await self._append(
            model.id, ModelRetired(model_id=model.id, connection_id=self._connection.id)
        )

    def _discovered(self, model_id: str, offer: OfferedModel) -> ModelDiscovered:
        return ModelDiscovered(
            model_id=model_id,
            connection_id=self._connection.id,
            model_name=model_name(self._connection.name, offer.upstream_id),
            upstream_id=offer.upstream_id,
            provider=self._connection.provider,
            owned_by=offer.owned_by,
        )

    async def _update(self, model_id: str, **values: Any) -> None:
        await self._conn.execute(
            update(models).where(models.c.id == model_id).values(updated_at=self._now, **values)
        )

    async def _append(
        self,
        model_id: str,
        data: ModelDiscovered | ModelUpdated | ModelRetired,
        *,
        expected_version: int | None = None,
    ) -> None:
        self._events.append((model_id, data, expected_version))
