"""What admins read: models and connections of their workspace, as stored by the catalog.

Every query is scoped to one workspace; an id from another workspace finds nothing.
Models come a page at a time in name order, with a keyset cursor (the last name and id
seen), so a page costs the same at the start of a large catalog as at its end.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Select, and_, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalog.domain import (
    Audience,
    ModelDetails,
    Price,
    TargetStatus,
    model_name,
    target_status,
)
from services.catalog.tables import (
    DETAIL_COLUMNS,
    aliases,
    connections,
    details_of,
    models,
    offers,
)


@dataclass(frozen=True, slots=True)
class CostThresholds:
    """Prices per million tokens from which a model counts as high-cost."""

    input: float
    output: float

    def flags(self, price: Price | None) -> bool:
        return price is not None and (price.input >= self.input or price.output >= self.output)


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
    updated_at: datetime
    retired_at: datetime | None
    details: ModelDetails
    high_cost: bool
    # The gateway name of the model that replaces this one, when known.
    successor: str | None
    # "byom" (the workspace's own connection) or "managed" (offered by the operator).
    source: str
    withdrawn: bool

    @property
    def price_unknown(self) -> bool:
        return self.details.price is None


@dataclass(frozen=True, slots=True)
class ModelFilter:
    """What an admin narrows the model list by; None leaves a criterion out."""

    query: str | None = None
    provider: str | None = None
    connection_id: str | None = None
    capability: str | None = None
    enabled: bool | None = None
    retired: bool | None = None
    price_unknown: bool | None = None
    high_cost: bool | None = None
    source: str | None = None
    # Withdrawn managed entries are left out unless asked for.
    withdrawn: bool | None = False


@dataclass(frozen=True, slots=True)
class ModelPage:
    models: list[ModelView]
    next_cursor: str | None


class InvalidCursor(ValueError):
    """A cursor this catalog did not hand out."""


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
    last_sync_success_at: datetime | None
    sync_failures: int
    next_sync_at: datetime | None
    new_model_action: str
    new_model_group_ids: list[str]


def _models_query(workspace_id: str) -> Select[Any]:
    return (
        select(
            models.c.id,
            models.c.name,
            models.c.upstream_id,
            models.c.connection.label("connection_id"),
            models.c.provider,
            models.c.enabled,
            models.c.retired,
            models.c.owned_by,
            models.c.discovered_at,
            models.c.updated_at,
            models.c.retired_at,
            models.c.source,
            models.c.withdrawn,
            connections.c.name.label("connection_name"),
            *DETAIL_COLUMNS,
        )
        .join(connections, connections.c.id == models.c.connection)
        .where(models.c.workspace == workspace_id)
    )


def _model_view(row: Any, thresholds: CostThresholds) -> ModelView:
    details = details_of(row)
    return ModelView(
        id=row.id,
        name=row.name,
        upstream_id=row.upstream_id,
        connection_id=row.connection_id,
        provider=row.provider,
        enabled=row.enabled,
        retired=row.retired,
        owned_by=row.owned_by,
        discovered_at=row.discovered_at,
        updated_at=row.updated_at,
        retired_at=row.retired_at,
        details=details,
        high_cost=thresholds.flags(details.price),
        successor=(
            model_name(row.connection_name, details.successor, row.source)
            if details.successor
            else None
        ),
        source=row.source,
        withdrawn=row.withdrawn,
    )


async def list_models(
    conn: AsyncConnection,
    workspace_id: str,
    thresholds: CostThresholds,
    criteria: ModelFilter | None = None,
    *,
    limit: int = 100,
    cursor: str | None = None,
) -> ModelPage:
    """One page of the workspace's models in name order, and the cursor of the next."""
    query = _models_query(workspace_id).where(*_conditions(criteria or ModelFilter(), thresholds))
    if cursor is not None:
        name, model_id = decode_cursor(cursor)
        query = query.where(tuple_(models.c.name, models.c.id) > tuple_(name, model_id))
    query = query.order_by(models.c.name, models.c.id).limit(limit + 1)

    rows = (await conn.execute(query)).all()
    found = [_model_view(row, thresholds) for row in rows[:limit]]
    more = len(rows) > limit
    return ModelPage(found, encode_cursor(found[-1].name, found[-1].id) if more else None)


def _conditions(criteria: ModelFilter, thresholds: CostThresholds) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if criteria.query:
        pattern = f"%{_escape_like(criteria.query.lower())}%"
        conditions.append(
            or_(
                func.lower(models.c.name).like(pattern, escape="\\"),
                func.lower(func.coalesce(models.c.display_name, "")).like(pattern, escape="\\"),
            )
        )
    if criteria.provider is not None:
        conditions.append(models.c.provider == criteria.provider)
    if criteria.connection_id is not None:
        conditions.append(models.c.connection == criteria.connection_id)
    if criteria.capability is not None:
        conditions.append(models.c.capabilities.like(f"% {criteria.capability} %"))
    if criteria.enabled is not None:
        conditions.append(models.c.enabled == criteria.enabled)
    if criteria.retired is not None:
        conditions.append(models.c.retired == criteria.retired)
    if criteria.source is not None:
        conditions.append(models.c.source == criteria.source)
    if criteria.withdrawn is not None:
        conditions.append(models.c.withdrawn == criteria.withdrawn)
    priced = models.c.price_input.is_not(None) & models.c.price_output.is_not(None)
    if criteria.price_unknown is not None:
        conditions.append(~priced if criteria.price_unknown else priced)
    if criteria.high_cost is not None:
        high = and_(
            priced,
            or_(
                models.c.price_input >= thresholds.input,
                models.c.price_output >= thresholds.output,
            ),
        )
        conditions.append(high if criteria.high_cost else ~high)
    return conditions


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def encode_cursor(name: str, model_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([name, model_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        name, model_id = orjson.loads(raw)
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError):
        raise InvalidCursor("the cursor is not one this API handed out") from None

    if not (isinstance(name, str) and isinstance(model_id, str)):
        raise InvalidCursor("the cursor is not one this API handed out")

    return name, model_id


async def get_model(
    conn: AsyncConnection, workspace_id: str, model_id: str, thresholds: CostThresholds
) -> ModelView | None:
    row = (await conn.execute(_models_query(workspace_id).where(models.c.id == model_id))).first()
    return _model_view(row, thresholds) if row is not None else None


async def get_models(
    conn: AsyncConnection, workspace_id: str, model_ids: list[str], thresholds: CostThresholds
) -> list[ModelView]:
    query = _models_query(workspace_id).where(models.c.id.in_(model_ids)).order_by(models.c.name)
    return [_model_view(row, thresholds) for row in await conn.execute(query)]


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
        connections.c.last_sync_success_at,
        connections.c.sync_failures,
        connections.c.next_sync_at,
        connections.c.new_model_action,
        connections.c.new_model_group_ids,
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


async def offers_of(conn: AsyncConnection, model_ids: list[str]) -> dict[str, Audience]:
    """Who each of these install models is offered to; a model never offered is left out."""
    query = select(offers).where(offers.c.model_id.in_(model_ids))
    return {
        row.model_id: Audience(row.all_workspaces, tuple(row.workspace_ids))
        for row in await conn.execute(query)
    }


@dataclass(frozen=True, slots=True)
class AliasView:
    name: str
    model_id: str
    model_name: str
    # Whether a call by the alias can reach its model; anything but OK is for the admin.
    target_status: TargetStatus
    # When the target is retired: the gateway name of what replaces it, if known.
    target_successor: str | None
    created_at: datetime
    updated_at: datetime


def _aliases_query(workspace_id: str) -> Select[Any]:
    return (
        select(
            aliases.c.name,
            aliases.c.model_id,
            aliases.c.created_at,
            aliases.c.updated_at,
            models.c.name.label("model_name"),
            models.c.enabled,
            models.c.retired,
            models.c.withdrawn,
            models.c.successor,
            models.c.source,
            connections.c.name.label("connection_name"),
        )
        .join(models, models.c.id == aliases.c.model_id)
        .join(connections, connections.c.id == models.c.connection)
        .where(aliases.c.workspace == workspace_id)
    )


def _alias_view(row: Any) -> AliasView:
    status = target_status(enabled=row.enabled, retired=row.retired, withdrawn=row.withdrawn)
    successor = None
    if status is TargetStatus.RETIRED and row.successor:
        successor = model_name(row.connection_name, row.successor, row.source)
    return AliasView(
        name=row.name,
        model_id=row.model_id,
        model_name=row.model_name,
        target_status=status,
        target_successor=successor,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def list_aliases(conn: AsyncConnection, workspace_id: str) -> list[AliasView]:
    query = _aliases_query(workspace_id).order_by(aliases.c.name)
    return [_alias_view(row) for row in await conn.execute(query)]


async def get_alias(conn: AsyncConnection, workspace_id: str, name: str) -> AliasView | None:
    row = (await conn.execute(_aliases_query(workspace_id).where(aliases.c.name == name))).first()
    return _alias_view(row) if row is not None else None
