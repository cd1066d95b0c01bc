"""What admins read: models and connections of their workspace, as stored by the catalog.

Every query is scoped to one workspace; an id from another workspace finds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalog.tables import connections, models


@dataclass(frozen=True, slots=True)
class ModelView:
    id: str
    name: str
    upstream_id: str
    connection_id: str
    provider: str
    enabled: bool
    retired: bool
    owned_by: str | None
    discovered_at: datetime


@dataclass(frozen=True, slots=True)
class ConnectionView:
    id: str
    provider: str
    name: str
    base_url: str
    status: str
    last_sync_at: datetime | None
    last_sync_ok: bool | None
    last_sync_reason: str | None


def _models_query(workspace_id: str) -> Select[Any]:
    return (
        select(
            models.c.id,
            models.c.name,
            models.c.upstream_id,
            models.c.connection.label("connection_id"),
            connections.c.provider,
            models.c.enabled,
            models.c.retired,
            models.c.owned_by,
            models.c.discovered_at,
        )
        .join(connections, connections.c.id == models.c.connection)
        .where(models.c.workspace == workspace_id)
    )


async def list_models(
    conn: AsyncConnection, workspace_id: str, *, connection_id: str | None = None
) -> list[ModelView]:
    query = _models_query(workspace_id).order_by(models.c.name)
    if connection_id is not None:
        query = query.where(models.c.connection == connection_id)

    return [ModelView(**row._mapping) for row in await conn.execute(query)]


async def get_model(conn: AsyncConnection, workspace_id: str, model_id: str) -> ModelView | None:
    row = (await conn.execute(_models_query(workspace_id).where(models.c.id == model_id))).first()
    return ModelView(**row._mapping) if row is not None else None


def _connections_query(workspace_id: str) -> Select[Any]:
    return select(
        connections.c.id,
        connections.c.provider,
        connections.c.name,
        connections.c.base_url,
        connections.c.status,
        connections.c.last_sync_at,
        connections.c.last_sync_ok,
        connections.c.last_sync_reason,
    ).where(connections.c.workspace == workspace_id)


async def list_connections(conn: AsyncConnection, workspace_id: str) -> list[ConnectionView]:
    query = _connections_query(workspace_id).order_by(connections.c.name, connections.c.id)
    return [ConnectionView(**row._mapping) for row in await conn.execute(query)]


async def get_connection(
    conn: AsyncConnection, workspace_id: str, connection_id: str
) -> ConnectionView | None:
    query = _connections_query(workspace_id).where(connections.c.id == connection_id)
    row = (await conn.execute(query)).first()
    return ConnectionView(**row._mapping) if row is not None else None
