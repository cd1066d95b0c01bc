"""The catalog's consumer of keyvault's provider events.

A connection announced by keyvault is recorded and its models listed; a rotated key
triggers a fresh listing (a new key may see other models); a disconnection marks the
connection. Each event is applied once (``Projection.apply_once``): the network half of a
sync runs first, outside any transaction, and the database half inside the projection's
transaction. A failed listing is recorded on the connection and the event acknowledged,
so one broken provider never holds up the events behind it; an admin can sync again.
"""

from __future__ import annotations

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalog.handlers import Catalog, NewConnection
from services.catalog.tables import CONNECTION_ACTIVE
from shared.events.consumer import Apply, Projection, subscribe_projection
from shared.events.envelope import Envelope
from shared.events.schemas import (
    ProviderConnected,
    ProviderDisconnected,
    ProviderKeyRotated,
    parse_data,
)
from shared.events.store import Actor
from shared.runtime import Runtime

log = structlog.get_logger(__name__)


def register(runtime: Runtime, catalog: Catalog) -> None:
    """Subscribe the provider consumer; call before the runtime starts its broker."""
    consumer = ProviderEvents(runtime, catalog, runtime.projection("providers"))
    settings = runtime.settings
    subscribe_projection(
        runtime.broker,
        consumer.projection,
        stream=settings.nats_stream,
        subject=f"{settings.subject_prefix}.keyvault.>",
        handle=consumer.handle,
        ack_wait_seconds=settings.consumer_ack_wait_seconds,
    )


class ProviderEvents:
    """Turns provider events into connection records and model syncs."""

    def __init__(self, runtime: Runtime, catalog: Catalog, projection: Projection) -> None:
        self._runtime = runtime
        self._catalog = catalog
        self.projection = projection

    async def handle(self, envelope: Envelope) -> None:
        try:
            data = parse_data(envelope.type, envelope.data)
        except ValidationError:
            # Redelivering an event that can never be read would stop the consumer for good.
            log.error("provider_event_unreadable")
            return

        if isinstance(data, ProviderConnected):
            await self._connected(envelope, data)
        elif isinstance(data, ProviderKeyRotated):
            await self._key_rotated(envelope, data)
        elif isinstance(data, ProviderDisconnected):
            await self._disconnected(envelope, data)

    async def _connected(self, envelope: Envelope, data: ProviderConnected) -> None:
        if envelope.workspaceid is None:
            log.error("provider_event_without_workspace", connection_id=data.connection_id)
            return

        connection = NewConnection(
            id=data.connection_id,
            workspace_id=envelope.workspaceid,
            provider=data.provider,
            name=data.connection_name,
            base_url=data.base_url,
        )
        fetched = await self._catalog.fetch(connection.id, connection.workspace_id)

        async def apply(conn: AsyncConnection, envelope: Envelope) -> None:
            await self._catalog.record_connection(conn, connection)
            await self._catalog.apply_fetched(conn, connection.id, fetched, _actor(envelope))

        await self._apply_once(envelope, apply)

    async def _key_rotated(self, envelope: Envelope, data: ProviderKeyRotated) -> None:
        status = await self._catalog.connection_status(data.connection_id)
        if status != CONNECTION_ACTIVE or envelope.workspaceid is None:
            log.warning("key_rotated_for_inactive_connection", connection_id=data.connection_id)
            return

        fetched = await self._catalog.fetch(data.connection_id, envelope.workspaceid)

        async def apply(conn: AsyncConnection, envelope: Envelope) -> None:
            await self._catalog.apply_fetched(conn, data.connection_id, fetched, _actor(envelope))

        await self._apply_once(envelope, apply)

    async def _disconnected(self, envelope: Envelope, data: ProviderDisconnected) -> None:
        async def apply(conn: AsyncConnection, _envelope: Envelope) -> None:
            await self._catalog.mark_disconnected(conn, data.connection_id)

        await self._apply_once(envelope, apply)
        log.info("connection_disconnected", connection_id=data.connection_id)

    async def _apply_once(self, envelope: Envelope, apply: Apply) -> None:
        applied = await self.projection.apply_once(
            envelope, apply, after_commit=self._runtime.events_committed
        )
        if not applied:
            log.info("provider_event_already_applied")


def _actor(envelope: Envelope) -> Actor:
    # Models appear because someone connected a provider: the events name that person
    # and carry the same correlation, so "who did what" follows the chain.
    return Actor(
        workspace_id=envelope.workspaceid,
        actor_id=envelope.actorid,
        correlation_id=envelope.correlationid or envelope.id,
    )
