"""Workspace settings: what an admin decides for the whole workspace.

A change is a ``workspace.settings_changed`` event naming only what changed; asking for
the current value changes nothing and records nothing. The proxy follows the event.
"""

from __future__ import annotations

import structlog
from sqlalchemy import select, update

from services.access.domain import NotFound
from services.access.handlers.context import Caller
from services.access.tables import workspaces
from shared.events.schemas import WorkspaceSettingsChanged
from shared.runtime import Runtime

log = structlog.get_logger(__name__)


async def allows_unpriced_models(runtime: Runtime, workspace_id: str) -> bool:
    query = select(workspaces.c.allow_unpriced_models).where(workspaces.c.id == workspace_id)
    async with runtime.engine.connect() as conn:
        value = (await conn.execute(query)).scalar_one_or_none()
    if value is None:
        raise NotFound("workspace_not_found", f"no workspace {workspace_id}")

    return bool(value)


async def change_settings(
    runtime: Runtime, caller: Caller, *, allow_unpriced_models: bool | None
) -> bool:
    """Apply the settings given; the workspace's allow_unpriced_models afterwards."""
    async with runtime.engine.begin() as conn:
        query = (
            select(workspaces.c.allow_unpriced_models)
            .where(workspaces.c.id == caller.workspace_id)
            .with_for_update()
        )
        current = (await conn.execute(query)).scalar_one_or_none()
        if current is None:
            raise NotFound("workspace_not_found", f"no workspace {caller.workspace_id}")

        if allow_unpriced_models is None or allow_unpriced_models == current:
            return bool(current)

        await conn.execute(
            update(workspaces)
            .where(workspaces.c.id == caller.workspace_id)
            .values(allow_unpriced_models=allow_unpriced_models)
        )
        event = WorkspaceSettingsChanged(allow_unpriced_models=allow_unpriced_models)
        await runtime.store.append(
            conn, f"workspace-{caller.workspace_id}", [event], actor=caller.actor
        )

    runtime.events_committed()
    log.info("workspace_settings_changed", allow_unpriced_models=allow_unpriced_models)
    return allow_unpriced_models
