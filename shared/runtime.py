"""What every service process runs besides its routes: database, NATS, relay, consumers.

A service builds one :class:`Runtime` at start-up and hands it to its handlers; the
runtime's ``lifespan`` creates the schema, makes sure the stream exists, starts the
relay and the FastStream subscribers, and stops them in reverse order on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import nats
import structlog
from faststream.nats import NatsBroker
from nats.aio.client import Client as NatsClient
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.config import ServiceSettings
from shared.db import create_engine, create_schema
from shared.events.consumer import Projection
from shared.events.relay import Relay
from shared.events.store import EventStore, EventTables, define_event_tables
from shared.events.stream import ensure_stream

log = structlog.get_logger(__name__)


class Runtime:
    """The long-lived parts of one service process."""

    def __init__(self, settings: ServiceSettings, *, service: str, metadata: MetaData) -> None:
        self.settings = settings
        self.service = service
        self.metadata = metadata
        self.tables: EventTables = define_event_tables(metadata)
        self.engine: AsyncEngine = create_engine(settings.database_url, schema=metadata.schema)
        self.store = EventStore(
            self.tables, service=service, subject_prefix=settings.subject_prefix
        )
        # FastStream logs through our root handler (JSON, redacted) instead of its own.
        # Reconnect forever: the relay and consumers resume where they stopped.
        self.broker = NatsBroker(
            settings.nats_url,
            graceful_timeout=10.0,
            logger=logging.getLogger("faststream.byom"),
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
        )
        self.relay: Relay | None = None
        self._nats: NatsClient | None = None
        self._relay_task: asyncio.Task[None] | None = None

    def projection(self, name: str) -> Projection:
        return Projection(self.engine, self.tables, name=f"{self.service}-{name}")

    def events_committed(self) -> None:
        """Tell the relay that a transaction appended events."""
        if self.relay is not None:
            self.relay.wake()

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        await create_schema(self.engine, self.metadata)
        self._nats = await nats.connect(
            self.settings.nats_url,
            name=f"byom-{self.service}-relay",
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
        )
        js = self._nats.jetstream()
        await ensure_stream(
            js,
            self.settings.nats_stream,
            self.settings.subject_prefix,
            replicas=self.settings.nats_stream_replicas,
        )
        self.relay = Relay(
            self.engine,
            self.tables,
            js,
            stream=self.settings.nats_stream,
            name=self.service,
            poll_seconds=self.settings.relay_poll_seconds,
        )
        self._relay_task = asyncio.create_task(self.relay.run(), name=f"{self.service}-relay")
        await self.broker.start()
        log.info("service_started", nats_stream=self.settings.nats_stream)
        try:
            yield
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        await self.broker.stop()
        if self._relay_task is not None:
            # One last round so events committed just before shutdown go out now.
            if self.relay is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.relay.publish_pending(), timeout=5)
            self._relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay_task
        if self._nats is not None:
            await self._nats.drain()
        await self.engine.dispose()
        log.info("service_stopped")
