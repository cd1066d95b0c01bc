"""The catalog's commands: record connections, apply model listings, switch models on and
off, set a connection's policy for new models, and claim the syncs that are due.

Each command loads what it needs under a row lock, decides with ``domain``, and saves the
rows and their events in one transaction; the relay is woken after the commit. Network
calls (keyvault, the provider) happen before the transaction opens, in ``upstream``.
The steps that take a connection run inside the caller's transaction, so the event
consumer can run them inside ``Projection.apply_once``.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.catalog import views
from services.catalog.domain import (
    INSTALL_SCOPE,
    Fetched,
    KnownModel,
    ListingFailed,
    NewModelPolicy,
    Switch,
    SyncResult,
    decide_switch,
    diff_models,
    is_superseded,
)
from services.catalog.errors import ConnectionDisconnected, ConnectionNotFound, ModelNotFound
from services.catalog.schedule import SyncSchedule
from services.catalog.tables import (
    CONNECTION_ACTIVE,
    CONNECTION_DISCONNECTED,
    DETAIL_COLUMNS,
    connections,
    details_of,
    models,
)
from services.catalog.upstream import ModelSource
from services.catalog.writer import DiffWriter
from shared.db import upsert
from shared.events import schemas as ev
from shared.events.envelope import utcnow
from shared.events.store import Actor
from shared.runtime import Runtime

log = structlog.get_logger(__name__)

# Who acts when nobody asked: scheduled syncs, and the grants a policy asks for.
SYSTEM_ACTOR_ID = "system"


@dataclass(frozen=True, slots=True)
class NewConnection:
    """A connection as keyvault announced it."""

    id: str
    workspace_id: str
    provider: str
    name: str
    base_url: str


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    """What a bulk switch did to each model asked for."""

    decisions: dict[str, Switch]
    not_found: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Claimed:
    """A connection whose sync this replica has claimed."""

    connection_id: str
    workspace_id: str


class Catalog:
    """The catalog's write side, built once at start-up."""

    def __init__(
        self,
        runtime: Runtime,
        source: ModelSource,
        schedule: SyncSchedule,
        *,
        spread: Callable[[], float] | None = None,
    ) -> None:
        self._runtime = runtime
        self._source = source
        self._schedule = schedule
        self._spread = spread or (lambda: random.uniform(-1.0, 1.0))  # noqa: S311 - jitter, not a secret

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

        return await self._fetch_and_apply(connection_id, workspace_id, actor)

    async def sync_claimed(self, claimed: Claimed) -> SyncResult:
        """Run a sync the scheduler claimed, as the system."""
        actor = Actor(
            event_workspace(claimed.workspace_id),
            SYSTEM_ACTOR_ID,
            correlation_id=str(uuid.uuid4()),
        )
        return await self._fetch_and_apply(claimed.connection_id, claimed.workspace_id, actor)

    async def _fetch_and_apply(
        self, connection_id: str, workspace_id: str, actor: Actor
    ) -> SyncResult:
        fetched = await self.fetch(connection_id, workspace_id)

        async with self._runtime.engine.begin() as conn:
            result = await self.apply_fetched(conn, connection_id, fetched, actor)

        self._runtime.events_committed()
        return result

    async def claim_due(self, now: datetime, *, limit: int, lease: timedelta) -> list[Claimed]:
        return await claim_due(self._runtime.engine, now, limit=limit, lease=lease)

    async def switch(
        self, model_id: str, *, workspace_id: str, enable: bool, actor: Actor
    ) -> Switch:
        """Enable or disable a model; an event only when its state really changes."""
        outcome = await self.switch_many(
            [model_id], workspace_id=workspace_id, enable=enable, actor=actor
        )
        if outcome.not_found:
            raise ModelNotFound(model_id)

        return outcome.decisions[model_id]

    async def switch_many(
        self, model_ids: Sequence[str], *, workspace_id: str, enable: bool, actor: Actor
    ) -> BulkOutcome:
        """Enable or disable several models in one transaction; retired ones stay off."""
        wanted = list(dict.fromkeys(model_ids))
        async with self._runtime.engine.begin() as conn:
            query = (
                select(
                    models.c.id,
                    models.c.enabled,
                    models.c.retired,
                    models.c.withdrawn,
                    models.c.connection,
                )
                .where(models.c.id.in_(wanted), models.c.workspace == workspace_id)
                .order_by(models.c.id)
                .with_for_update()
            )
            rows = {row.id: row for row in await conn.execute(query)}
            decisions = {
                model_id: decide_switch(
                    enabled=row.enabled,
                    retired=row.retired,
                    withdrawn=row.withdrawn,
                    enable=enable,
                )
                for model_id, row in rows.items()
            }
            changing = [mid for mid, decision in decisions.items() if decision is Switch.CHANGE]
            if changing:
                await conn.execute(
                    update(models)
                    .where(models.c.id.in_(changing))
                    .values(enabled=enable, updated_at=utcnow())
                )
            # Rows first, events last (see shared.events.store).
            for model_id in changing:
                event = ev.ModelEnabled if enable else ev.ModelDisabled
                data = event(model_id=model_id, connection_id=rows[model_id].connection)
                await self._runtime.store.append(conn, f"model-{model_id}", [data], actor=actor)

        if changing:
            self._runtime.events_committed()
            log.info("models_switched", count=len(changing), enabled=enable)
        return BulkOutcome(decisions, tuple(mid for mid in wanted if mid not in rows))

    async def set_new_model_policy(
        self, connection_id: str, policy: NewModelPolicy, *, workspace_id: str, actor: Actor
    ) -> None:
        """Record what the connection's syncs do with models they discover from now on."""
        async with self._runtime.engine.begin() as conn:
            query = (
                select(connections.c.new_model_action, connections.c.new_model_group_ids)
                .where(connections.c.id == connection_id, connections.c.workspace == workspace_id)
                .with_for_update()
            )
            row = (await conn.execute(query)).first()
            if row is None:
                raise ConnectionNotFound(connection_id)

            if (row.new_model_action, list(row.new_model_group_ids)) == (
                policy.action.value,
                list(policy.group_ids),
            ):
                return

            await conn.execute(
                update(connections)
                .where(connections.c.id == connection_id)
                .values(
                    new_model_action=policy.action.value, new_model_group_ids=list(policy.group_ids)
                )
            )
            data = ev.NewModelPolicySet(
                connection_id=connection_id,
                action=policy.action.value,
                group_ids=list(policy.group_ids),
            )
            await self._runtime.store.append(
                conn, f"connection-{connection_id}", [data], actor=actor
            )

        self._runtime.events_committed()
        log.info("new_model_policy_set", connection_id=connection_id, action=policy.action.value)

    async def connection_status(self, connection_id: str) -> tuple[str | None, str | None]:
        """``active`` or ``disconnected``, and the owning workspace (``install`` for the
        operator's); None and None for a connection the catalog never heard of."""
        query = select(connections.c.status, connections.c.workspace).where(
            connections.c.id == connection_id
        )
        async with self._runtime.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return (row.status, row.workspace) if row is not None else (None, None)

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
            .values(status=CONNECTION_DISCONNECTED, sync_claimed_until=None)
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
            failures = connection.sync_failures + 1
            await self._record_sync(
                conn, connection_id, fetched.started_at, failures, fetched.reason
            )
            log.warning(
                "models_sync_failed",
                connection_id=connection_id,
                reason=fetched.reason,
                consecutive_failures=failures,
            )
            return SyncResult(connection_id, fetched.started_at, ok=False, reason=fetched.reason)

        diff = diff_models(await self._known_models(conn, connection_id), fetched.models)
        await DiffWriter(self._runtime, conn, connection, actor).write(diff)
        await self._record_sync(conn, connection_id, fetched.started_at, 0, None)
        result = SyncResult(
            connection_id,
            fetched.started_at,
            ok=True,
            discovered=len(diff.discovered) + len(diff.reappeared),
            updated=len(diff.changed),
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
        # An install connection's managed entries follow its models; they are not its models.
        query = select(
            models.c.id, models.c.upstream_id, models.c.owned_by, models.c.retired, *DETAIL_COLUMNS
        ).where(models.c.connection == connection_id, models.c.offer_of.is_(None))
        return [
            KnownModel(row.id, row.upstream_id, row.owned_by, row.retired, details_of(row))
            for row in await conn.execute(query)
        ]

    async def _record_sync(
        self,
        conn: AsyncConnection,
        connection_id: str,
        at: datetime,
        failures: int,
        reason: str | None,
    ) -> None:
        values: dict[str, Any] = {
            "last_sync_at": at,
            "last_sync_ok": reason is None,
            "last_sync_reason": reason,
            "sync_failures": failures,
            "next_sync_at": self._schedule.next_sync_at(utcnow(), failures, self._spread()),
            "sync_claimed_until": None,
        }
        if reason is None:
            values["last_sync_success_at"] = at
        await conn.execute(
            update(connections).where(connections.c.id == connection_id).values(**values)
        )


def event_workspace(workspace_id: str) -> str | None:
    """The workspace an event names: none for the install's own connections and models."""
    return None if workspace_id == INSTALL_SCOPE else workspace_id


async def claim_due(
    engine: AsyncEngine, now: datetime, *, limit: int, lease: timedelta
) -> list[Claimed]:
    """Claim up to ``limit`` active connections whose sync is due, for ``lease``.

    Safe with several replicas: on PostgreSQL the candidates are locked with SKIP LOCKED,
    so replicas pick different ones without waiting on each other; on either backend the
    claim itself is a conditional update that only succeeds while nobody else holds the
    connection, so a connection is synced by one replica at a time. A replica that dies
    mid-sync loses its claim when the lease ends.
    """
    due = (
        (connections.c.status == CONNECTION_ACTIVE)
        & or_(connections.c.next_sync_at.is_(None), connections.c.next_sync_at <= now)
        & or_(
            connections.c.sync_claimed_until.is_(None),
            connections.c.sync_claimed_until < now,
        )
    )
    candidates = (
        select(connections.c.id)
        .where(due)
        .order_by(connections.c.next_sync_at.asc().nulls_first())
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    async with engine.begin() as conn:
        ids = list((await conn.execute(candidates)).scalars())
        if not ids:
            return []

        claim = (
            update(connections)
            .where(connections.c.id.in_(ids), due)
            .values(sync_claimed_until=now + lease)
            .returning(connections.c.id, connections.c.workspace)
        )
        rows = (await conn.execute(claim)).all()
    return [Claimed(row.id, row.workspace) for row in rows]
