"""The catalog's consumers: keyvault's provider events, and access's new workspaces.

A connection announced by keyvault is recorded and its models listed; a rotated key
triggers a fresh listing (a new key may see other models); a disconnection marks the
connection. Each event is applied once (``Projection.apply_once``): the network half of a
sync runs first, outside any transaction, and the database half inside the projection's
transaction. A failed listing is recorded on the connection and the event acknowledged,
so one broken provider never holds up the events behind it; an admin can sync again.

A new workspace is recorded, and given each managed model offered to all workspaces.
"""

from __future__ import annotations

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalog.domain import INSTALL_SCOPE
from services.catalog.handlers import SYSTEM_ACTOR_ID, Catalog, NewConnection
from services.catalog.offers import Offers
from services.catalog.tables import CONNECTION_ACTIVE
from shared.events.consumer import Apply, Projection, subscribe_projection
from shared.events.envelope import Envelope
from shared.events.schemas import (
    ProviderConnected,
    ProviderDisconnected,
    ProviderKeyRotated,
    WorkspaceCreated,
    parse_data,
)
from shared.events.store import Actor
from shared.runtime import Runtime

log = structlog.get_logger(__name__)


def register(runtime: Runtime, catalog: Catalog, offers: Offers) -> None:
    """Subscribe the consumers; call before the runtime starts its broker."""
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
    workspaces = WorkspaceEvents(runtime, offers, runtime.projection("workspaces"))
    subscribe_projection(
        runtime.broker,
        workspaces.projection,
        stream=settings.nats_stream,
        subject=f"{settings.subject_prefix}.access.workspace.created",
        handle=workspaces.handle,
        ack_wait_seconds=settings.consumer_ack_wait_seconds,
    )


class WorkspaceEvents:
    """Records each workspace access creates, and gives it the models offered to all."""

    def __init__(self, runtime: Runtime, offers: Offers, projection: Projection) -> None:
        self._runtime = runtime
        self._offers = offers
        self.projection = projection

    async def handle(self, envelope: Envelope) -> None:
        if envelope.type != WorkspaceCreated.event_type() or envelope.workspaceid is None:
            return

        workspace_id = envelope.workspaceid
        offered = 0

        async def apply(conn: AsyncConnection, envelope: Envelope) -> None:
            nonlocal offered
            actor = Actor(workspace_id, SYSTEM_ACTOR_ID, envelope.correlationid or envelope.id)
            offered = await self._offers.workspace_created(conn, workspace_id, envelope.time, actor)

        if await self.projection.apply_once(
            envelope, apply, after_commit=self._runtime.events_committed
        ):
            log.info("workspace_recorded", managed_models_offered=offered)


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
        # The install operator's connections belong to no workspace; their models are
        # recorded under the install and offered to workspaces one by one.
        workspace_id = INSTALL_SCOPE if data.scope == "install" else envelope.workspaceid
        if workspace_id is None:
            log.error("provider_event_without_workspace", connection_id=data.connection_id)
            return

        connection = NewConnection(
            id=data.connection_id,
            workspace_id=workspace_id,
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
        status, workspace_id = await self._catalog.connection_status(data.connection_id)
        if status != CONNECTION_ACTIVE or workspace_id is None:
            log.warning("key_rotated_for_inactive_connection", connection_id=data.connection_id)
            return

        fetched = await self._catalog.fetch(data.connection_id, workspace_id)

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
