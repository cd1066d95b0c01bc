"""What access learns from catalog: which models each workspace has, and the grants a
connection's new-model policy asks for.

A durable consumer on ``<prefix>.catalog.>`` keeps the ``models`` table, so a rule can
only name a model the workspace really has. A model belongs to the workspace named on
its event's envelope. Events this code does not know, or that are about something
other than models, are acknowledged and ignored.

A ``model.enabled`` event that carries a ``grant`` was caused by a policy, not a person:
access creates the rules it names, as the system, with their ``access.granted`` events,
in the same transaction that records the event as applied. A rule that already exists
is left as it is, and a group that no longer exists in the workspace is skipped and
logged, so a redelivery or a deleted group never fails the consumer.
"""

from __future__ import annotations

import structlog
from pydantic import ValidationError
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.access import queries
from services.access.tables import models, rules
from shared.db import upsert
from shared.events.consumer import subscribe_projection
from shared.events.envelope import Envelope, new_id, utcnow
from shared.events.schemas import (
    AccessGranted,
    AutoGrant,
    ModelDisabled,
    ModelDiscovered,
    ModelEnabled,
    ModelEvent,
    ModelRetired,
    ModelWithdrawn,
    PrincipalKind,
    parse_data,
)
from shared.events.store import Actor
from shared.runtime import Runtime

log = structlog.get_logger(__name__)

# The actor of rules a policy asked for: nobody granted them by hand.
SYSTEM_ACTOR_ID = "system"


async def _apply(
    runtime: Runtime, conn: AsyncConnection, envelope: Envelope, event: ModelEvent
) -> None:
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

    # A managed model withdrawn from the workspace can no longer be granted, like a
    # retired one; offered again, it is discovered again.
    flags: dict[type[ModelEvent], dict[str, bool]] = {
        ModelRetired: {"retired": True},
        ModelWithdrawn: {"retired": True, "enabled": False},
        ModelEnabled: {"enabled": True},
        ModelDisabled: {"enabled": False},
    }
    change = flags.get(type(event))
    if change is not None:
        scoped = (models.c.id == event.model_id) & (models.c.workspace_id == envelope.workspaceid)
        await conn.execute(update(models).where(scoped).values(**change))

    if isinstance(event, ModelEnabled) and event.grant is not None and envelope.workspaceid:
        await _grant_by_policy(runtime, conn, envelope, envelope.workspaceid, event, event.grant)


async def _grant_by_policy(
    runtime: Runtime,
    conn: AsyncConnection,
    envelope: Envelope,
    workspace_id: str,
    event: ModelEnabled,
    grant: AutoGrant,
) -> None:
    model = await queries.model(conn, workspace_id, event.model_id)
    if model is None or model.retired:
        log.warning("policy_grant_skipped", model_id=event.model_id, reason="model_unknown")
        return

    principals: list[tuple[PrincipalKind, str]] = []
    if grant.principal_kind == "workspace":
        principals.append(("workspace", workspace_id))
    for group_id in dict.fromkeys(grant.group_ids if grant.principal_kind == "group" else []):
        if await queries.group(conn, workspace_id, group_id) is None:
            log.warning("policy_grant_group_missing", model_id=event.model_id, group_id=group_id)
            continue
        principals.append(("group", group_id))

    granted: list[AccessGranted] = []
    for kind, principal_id in principals:
        rule_id = new_id()
        statement = (
            upsert(conn, rules)
            .values(
                id=rule_id,
                workspace_id=workspace_id,
                model_id=event.model_id,
                principal_kind=kind,
                principal_id=principal_id,
                permission="can_view",
                granted_at=utcnow(),
            )
            .on_conflict_do_nothing()
            .returning(rules.c.id)
        )
        if (await conn.execute(statement)).first() is None:
            continue  # Already granted, by an admin or by an earlier policy.

        granted.append(
            AccessGranted(
                rule_id=rule_id,
                model_id=event.model_id,
                principal_kind=kind,
                principal_id=principal_id,
            )
        )

    # Rows first, events last (see shared.events.store).
    actor = Actor(workspace_id, SYSTEM_ACTOR_ID, envelope.correlationid or envelope.id)
    for data in granted:
        await runtime.store.append(
            conn, f"rule-{data.rule_id}", [data], actor=actor, expected_version=0
        )
    if granted:
        log.info("access_granted_by_policy", model_id=event.model_id, rules=len(granted))


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
            # The install's own models: workspaces get entries of their own when offered.
            log.debug("install_model_event_skipped", model_id=event.model_id)
            return

        async def apply(conn: AsyncConnection, env: Envelope) -> None:
            await _apply(runtime, conn, env, event)

        if await projection.apply_once(envelope, apply, after_commit=runtime.events_committed):
            log.info("model_event_applied", model_id=event.model_id)

    subscribe_projection(
        runtime.broker,
        projection,
        stream=runtime.settings.nats_stream,
        subject=f"{runtime.settings.subject_prefix}.catalog.>",
        handle=handle,
        ack_wait_seconds=runtime.settings.consumer_ack_wait_seconds,
    )
