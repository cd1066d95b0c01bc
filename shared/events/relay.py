"""The relay: publishes a service's appended events to JetStream, in append order.

It reads events after the position it last recorded, publishes each with its event id
as ``Nats-Msg-Id`` and waits for JetStream's acknowledgement, then records the new
position. A crash after a publish and before the position is saved makes the next run
publish those events again; JetStream drops the resends as duplicates, and consumers
skip event ids they have already applied. Nothing is lost, nothing applies twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
import structlog
from nats.js import JetStreamContext
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import upsert
from shared.events.store import EventTables

log = structlog.get_logger(__name__)


class Relay:
    """Moves appended events from the events table to the stream."""

    def __init__(
        self,
        engine: AsyncEngine,
        tables: EventTables,
        js: JetStreamContext,
        *,
        stream: str,
        name: str,
        poll_seconds: float = 0.5,
        batch_size: int = 200,
    ) -> None:
        self._engine = engine
        self._tables = tables
        self._js = js
        self._stream = stream
        self._name = name
        self._poll_seconds = poll_seconds
        self._batch_size = batch_size
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Called after a commit that appended events, so they go out at once."""
        self._wake.set()

    async def run(self) -> None:
        """Publish until cancelled; a failed round is logged and retried."""
        while True:
            try:
                published = await self.publish_pending()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("relay_round_failed", relay=self._name)
                published = 0
                await asyncio.sleep(self._poll_seconds)

            if published:
                continue

            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_seconds)
            self._wake.clear()

    async def publish_pending(self) -> int:
        """Publish one batch after the recorded position; return how many went out."""
        position = await self._recorded_position()
        rows = await self._events_after(position)
        for row in rows:
            await self._publish(row.subject, row.envelope)
            position = row.position

        if rows:
            await self._record_position(position)

        return len(rows)

    async def _recorded_position(self) -> int:
        offsets = self._tables.relay_offsets
        async with self._engine.connect() as conn:
            query = select(offsets.c.position).where(offsets.c.relay == self._name)
            value = (await conn.execute(query)).scalar_one_or_none()
        return int(value or 0)

    async def _events_after(self, position: int) -> list[Any]:
        events = self._tables.events
        query = (
            select(events.c.position, events.c.subject, events.c.envelope)
            .where(events.c.position > position)
            .order_by(events.c.position)
            .limit(self._batch_size)
        )
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def _publish(self, subject: str, envelope: dict[str, Any]) -> None:
        headers = {"Nats-Msg-Id": envelope["id"], "ce-type": envelope["type"]}
        if envelope.get("traceparent"):
            headers["traceparent"] = envelope["traceparent"]

        await self._js.publish(
            subject, orjson.dumps(envelope), stream=self._stream, headers=headers
        )

    async def _record_position(self, position: int) -> None:
        offsets = self._tables.relay_offsets
        async with self._engine.begin() as conn:
            statement = upsert(conn, offsets).values(relay=self._name, position=position)
            statement = statement.on_conflict_do_update(
                index_elements=[offsets.c.relay], set_={"position": position}
            )
            await conn.execute(statement)
