"""What access learns from catalog: which models each workspace has.

A durable consumer on ``<prefix>.catalog.>`` keeps the ``models`` table, so a rule can
only name a model the workspace really has. A model belongs to the workspace named on
its event's envelope. Events this code does not know, or that are about something
other than models, are acknowledged and ignored.
"""

from __future__ import annotations

import structlog
from pydantic import ValidationError
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.access.tables import models
from shared.db import upsert
from shared.events.consumer import subscribe_projection
from shared.events.envelope import Envelope
from shared.events.schemas import (
    ModelDisabled,
    ModelDiscovered,
    ModelEnabled,
    ModelEvent,
    ModelRetired,
    parse_data,
)
from shared.runtime import Runtime

log = structlog.get_logger(__name__)


async def _apply(conn: AsyncConnection, envelope: Envelope, event: ModelEvent) -> None:
    if isinstance(event, ModelDiscovered):
        statement = upsert(conn, models).values(
            id=event.model_id,
            workspace_id=envelope.workspaceid,
            connection_id=event.connection_id,
            name=event.model_name,
            enabled=False,
            retired=False,
            discovered_at=envelope.time,
        )
        # A model the provider offers again after retiring it comes back under its id,
        # disabled, and may be granted again; its workspace never changes.
        statement = statement.on_conflict_do_update(
            index_elements=[models.c.id],
            set_={"retired": False, "enabled": False},
            where=models.c.workspace_id == envelope.workspaceid,
        )
        await conn.execute(statement)
        return

    flags: dict[type[ModelEvent], dict[str, bool]] = {
        ModelRetired: {"retired": True},
        ModelEnabled: {"enabled": True},
        ModelDisabled: {"enabled": False},
    }
    change = flags.get(type(event))
    if change is not None:
        scoped = (models.c.id == event.model_id) & (models.c.workspace_id == envelope.workspaceid)
        await conn.execute(update(models).where(scoped).values(**change))


def register(runtime: Runtime) -> None:
    """Subscribe to catalog's events; call before the runtime starts its broker."""
    projection = runtime.projection("models")

    async def handle(envelope: Envelope) -> None:
        try:
            event = parse_data(envelope.type, envelope.data)
        except ValidationError:
            # Redelivering a malformed event cannot mend it; skip it, loudly.
            log.error("catalog_event_malformed")
            return

        if not isinstance(event, ModelEvent):
            return

        if envelope.workspaceid is None:
            log.error("catalog_event_without_workspace", model_id=event.model_id)
            return

        async def apply(conn: AsyncConnection, env: Envelope) -> None:
            await _apply(conn, env, event)

        if await projection.apply_once(envelope, apply):
            log.info("model_event_applied", model_id=event.model_id)

    subscribe_projection(
        runtime.broker,
        projection,
        stream=runtime.settings.nats_stream,
        subject=f"{runtime.settings.subject_prefix}.catalog.>",
        handle=handle,
        ack_wait_seconds=runtime.settings.consumer_ack_wait_seconds,
    )
