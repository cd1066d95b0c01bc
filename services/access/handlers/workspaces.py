"""Workspace settings: what an admin decides for the whole workspace.

A change is a ``workspace.settings_changed`` event naming only what changed; asking for
the current value changes nothing and records nothing. The proxy follows the event.

- ``allow_unpriced_models``: whether members may call models the catalog has no price for.
- ``model_sources``: which models members may call: the workspace's own (``byom_only``),
  the install's managed ones (``managed_only``), or ``both`` (the default).
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy import select, update

from services.access.domain import NotFound
from services.access.handlers.context import Caller
from services.access.tables import workspaces
from shared.events.schemas import ModelSources, WorkspaceSettingsChanged
from shared.runtime import Runtime

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Settings:
    allow_unpriced_models: bool = True
    model_sources: ModelSources = "both"


async def settings_of(runtime: Runtime, workspace_id: str) -> Settings:
    query = select(workspaces.c.allow_unpriced_models, workspaces.c.model_sources).where(
        workspaces.c.id == workspace_id
    )
    async with runtime.engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound("workspace_not_found", f"no workspace {workspace_id}")

    return Settings(bool(row.allow_unpriced_models), row.model_sources)


async def change_settings(
    runtime: Runtime,
    caller: Caller,
    *,
    allow_unpriced_models: bool | None = None,
    model_sources: ModelSources | None = None,
) -> Settings:
    """Apply the settings given; the workspace's settings afterwards."""
    async with runtime.engine.begin() as conn:
        query = (
            select(workspaces.c.allow_unpriced_models, workspaces.c.model_sources)
            .where(workspaces.c.id == caller.workspace_id)
            .with_for_update()
        )
        row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound("workspace_not_found", f"no workspace {caller.workspace_id}")

        current = Settings(bool(row.allow_unpriced_models), row.model_sources)
        wanted = Settings(
            current.allow_unpriced_models
            if allow_unpriced_models is None
            else allow_unpriced_models,
            model_sources or current.model_sources,
        )
        changes: dict[str, object] = {}
        if (
            allow_unpriced_models is not None
            and allow_unpriced_models != current.allow_unpriced_models
        ):
            changes["allow_unpriced_models"] = allow_unpriced_models
        if model_sources is not None and model_sources != current.model_sources:
            changes["model_sources"] = model_sources
        if not changes:
            return current

        await conn.execute(
            update(workspaces).where(workspaces.c.id == caller.workspace_id).values(**changes)
        )
        event = WorkspaceSettingsChanged.model_validate(changes)
        await runtime.store.append(
            conn, f"workspace-{caller.workspace_id}", [event], actor=caller.actor
        )

    runtime.events_committed()
    log.info("workspace_settings_changed", **changes)
    return wanted
