"""Appending a service's own events to its ``events`` table.

The table is the service's source of truth. Appends happen in the caller's transaction,
next to whatever state the caller derives, so both commit or neither does.

Positions must become visible in the order they were assigned, or the relay, which
reads "everything after position N", would skip a slow transaction's event. PostgreSQL
sequences commit out of order, so an append takes an exclusive lock on the table until
its transaction ends: appends are serial, while reads go on unblocked.

Because that lock is held to the end of the transaction, a handler appends last, after
every row it writes: a transaction that holds the lock and then waits for a row could
deadlock with one that holds the row and waits for the lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import JSON

from shared.db import UTCDateTime
from shared.events.envelope import Envelope
from shared.events.schemas import EventData

_JSON = JSON().with_variant(JSONB(), "postgresql")


class ConcurrencyConflict(Exception):
    """Another writer changed the aggregate since it was loaded."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id} is at version {actual}, not the expected {expected}")
        self.stream_id = stream_id


@dataclass(frozen=True, slots=True)
class EventTables:
    events: Table
    relay_offsets: Table
    processed: Table


def define_event_tables(metadata: MetaData) -> EventTables:
    """The three tables of the event machinery, in the service's own schema."""
    events = Table(
        "events",
        metadata,
        Column(
            "position",
            BigInteger().with_variant(Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("id", String(36), nullable=False, unique=True),
        Column("stream_id", String(200), nullable=False),
        Column("stream_version", Integer, nullable=False),
        Column("type", String(200), nullable=False),
        Column("subject", String(300), nullable=False),
        Column("workspace_id", String(36)),
        Column("recorded_at", UTCDateTime(), nullable=False, server_default=func.now()),
        Column("envelope", _JSON, nullable=False),
        UniqueConstraint("stream_id", "stream_version", name="events_stream_version_key"),
    )
    Index("events_workspace_position_idx", events.c.workspace_id, events.c.position)
    relay_offsets = Table(
        "relay_offsets",
        metadata,
        Column("relay", String(100), primary_key=True),
        Column("position", BigInteger, nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False, server_default=func.now()),
    )
    processed = Table(
        "processed_events",
        metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", String(36), primary_key=True),
        Column("applied_at", UTCDateTime(), nullable=False, server_default=func.now()),
    )
    return EventTables(events=events, relay_offsets=relay_offsets, processed=processed)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who caused the events: a person, a service, or the system itself."""

    workspace_id: str | None
    actor_id: str | None
    correlation_id: str | None = None


def _current_traceparent() -> str | None:
    if not trace.get_current_span().get_span_context().is_valid:
        return None

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


class EventStore:
    """Appends events of one service, with optimistic concurrency per stream."""

    def __init__(self, tables: EventTables, *, service: str, subject_prefix: str) -> None:
        self._events = tables.events
        self._source = f"/byom/{service}"
        self._subject_prefix = subject_prefix

    async def append(
        self,
        conn: AsyncConnection,
        stream_id: str,
        datas: Sequence[EventData],
        *,
        actor: Actor,
        expected_version: int | None = None,
    ) -> list[Envelope]:
        """Append events to one stream; ``expected_version`` None means "whatever is there"."""
        if not datas:
            return []

        await self._lock(conn)
        current = await self.version(conn, stream_id)
        if expected_version is not None and current != expected_version:
            raise ConcurrencyConflict(stream_id, expected_version, current)

        envelopes = [
            self._envelope(stream_id, current + offset, data, actor)
            for offset, data in enumerate(datas, start=1)
        ]
        await conn.execute(
            insert(self._events),
            [
                {
                    "id": envelope.id,
                    "stream_id": stream_id,
                    "stream_version": envelope.streamversion,
                    "type": envelope.type,
                    "subject": data.subject(self._subject_prefix),
                    "workspace_id": envelope.workspaceid,
                    "envelope": envelope.model_dump(mode="json", exclude_none=True),
                }
                for envelope, data in zip(envelopes, datas, strict=True)
            ],
        )
        return envelopes

    async def version(self, conn: AsyncConnection, stream_id: str) -> int:
        query = select(func.coalesce(func.max(self._events.c.stream_version), 0)).where(
            self._events.c.stream_id == stream_id
        )
        return int((await conn.execute(query)).scalar_one())

    async def _lock(self, conn: AsyncConnection) -> None:
        if conn.dialect.name != "postgresql":
            # SQLite already lets one writer at a time hold the database.
            return

        table = f'"{self._events.schema}"."events"' if self._events.schema else '"events"'
        await conn.execute(text(f"LOCK TABLE {table} IN EXCLUSIVE MODE"))

    def _envelope(self, stream_id: str, version: int, data: EventData, actor: Actor) -> Envelope:
        return Envelope(
            source=self._source,
            type=data.event_type(),
            subject=stream_id,
            data=data.model_dump(mode="json"),
            workspaceid=actor.workspace_id,
            actorid=actor.actor_id,
            correlationid=actor.correlation_id,
            traceparent=_current_traceparent(),
            streamid=stream_id,
            streamversion=version,
        )
