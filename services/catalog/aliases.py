"""Workspace aliases: short names ("default-chat", "cheap") an admin points at a model.

The catalog owns them because it owns model names and knows each model's state, which
the alias API shows as the target's status. An alias grants nothing: the proxy resolves
it to its model and then applies that model's rules, so a member without a grant on the
target is refused however the model is named. Re-pointing is one ``alias.set`` event;
the proxy follows it within the same bound as any other change.

An alias may point at a disabled model (the admin may enable it later), never at a
retired or withdrawn one; a target that is retired or withdrawn afterwards leaves the
alias in place, flagged by its ``target_status``, until the admin re-points it.
"""

from __future__ import annotations

import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalog.domain import check_alias
from services.catalog.errors import AliasNotFound, ModelNotFound, Refused
from services.catalog.tables import aliases, models
from shared.db import upsert
from shared.events import schemas as ev
from shared.events.envelope import utcnow
from shared.events.store import Actor
from shared.runtime import Runtime

log = structlog.get_logger(__name__)


def stream_id(workspace_id: str, alias: str) -> str:
    return f"alias-{workspace_id}-{alias}"


class Aliases:
    """Creating, re-pointing and removing a workspace's aliases."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def point(self, workspace_id: str, alias: str, model_id: str, actor: Actor) -> bool:
        """Point ``alias`` at ``model_id``, creating it if needed; False if it already did."""
        check_alias(alias)
        async with self._runtime.engine.begin() as conn:
            target = await self._target(conn, workspace_id, model_id)
            current = await self._current(conn, workspace_id, alias)
            if current == model_id:
                return False

            now = utcnow()
            if current is None:
                statement = upsert(conn, aliases).values(
                    workspace=workspace_id,
                    name=alias,
                    model_id=model_id,
                    created_at=now,
                    updated_at=now,
                )
                await conn.execute(statement.on_conflict_do_nothing())
            else:
                await conn.execute(
                    update(aliases)
                    .where(aliases.c.workspace == workspace_id, aliases.c.name == alias)
                    .values(model_id=model_id, updated_at=now)
                )
            data = ev.AliasSet(alias=alias, model_id=model_id, model_name=target)
            await self._runtime.store.append(
                conn, stream_id(workspace_id, alias), [data], actor=actor
            )

        self._runtime.events_committed()
        log.info("alias_set", alias=alias, model_id=model_id, repointed=current is not None)
        return True

    async def remove(self, workspace_id: str, alias: str, actor: Actor) -> None:
        async with self._runtime.engine.begin() as conn:
            removed = await conn.execute(
                delete(aliases)
                .where(aliases.c.workspace == workspace_id, aliases.c.name == alias)
                .returning(aliases.c.name)
            )
            if removed.first() is None:
                raise AliasNotFound(alias)

            await self._runtime.store.append(
                conn, stream_id(workspace_id, alias), [ev.AliasRemoved(alias=alias)], actor=actor
            )

        self._runtime.events_committed()
        log.info("alias_removed", alias=alias)

    async def _target(self, conn: AsyncConnection, workspace_id: str, model_id: str) -> str:
        """The target's gateway name, once it is known to be one an alias may point at."""
        query = (
            select(models.c.name, models.c.retired, models.c.withdrawn)
            .where(models.c.id == model_id, models.c.workspace == workspace_id)
            .with_for_update()
        )
        row = (await conn.execute(query)).first()
        if row is None:
            raise ModelNotFound(model_id)

        if row.retired:
            raise Refused(
                "model_retired", f"model {row.name!r} is retired: point the alias elsewhere"
            )

        if row.withdrawn:
            raise Refused(
                "model_withdrawn", f"model {row.name!r} is no longer offered to this workspace"
            )

        return str(row.name)

    async def _current(self, conn: AsyncConnection, workspace_id: str, alias: str) -> str | None:
        query = (
            select(aliases.c.model_id)
            .where(aliases.c.workspace == workspace_id, aliases.c.name == alias)
            .with_for_update()
        )
        current: str | None = (await conn.execute(query)).scalar_one_or_none()
        return current
