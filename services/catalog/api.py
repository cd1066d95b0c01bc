"""The catalog's HTTP routes: health, and the admin API under ``/catalog/v1``.

Routes parse, call a handler or a view, and shape the answer. Every admin route works in
the caller's workspace only; ids from elsewhere are answered 404, like unknown ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from services.catalog import views
from services.catalog.domain import Switch, SyncResult
from services.catalog.errors import (
    CatalogError,
    ConnectionDisconnected,
    ConnectionNotFound,
    ModelNotFound,
    NotFound,
)
from services.catalog.handlers import Catalog
from shared.events.store import Actor
from shared.http import ApiError, error_body
from shared.principal import AdminPrincipal, Principal
from shared.runtime import Runtime

log = structlog.get_logger(__name__)


class ModelOut(BaseModel):
    id: str
    name: str
    upstream_id: str
    connection_id: str
    provider: str
    enabled: bool
    retired: bool
    owned_by: str | None
    discovered_at: datetime


class ModelList(BaseModel):
    data: list[ModelOut]


class ConnectionOut(BaseModel):
    id: str
    provider: str
    name: str
    base_url: str
    status: str
    last_sync_at: datetime | None
    last_sync_ok: bool | None
    last_sync_reason: str | None


class ConnectionList(BaseModel):
    data: list[ConnectionOut]


class SyncOut(BaseModel):
    connection_id: str
    ok: bool
    reason: str | None
    synced_at: datetime
    discovered: int
    updated: int
    retired: int
    superseded: bool


def _catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


CatalogDep = Annotated[Catalog, Depends(_catalog)]
RuntimeDep = Annotated[Runtime, Depends(_runtime)]

health = APIRouter(prefix="/catalog", tags=["health"])
admin = APIRouter(prefix="/catalog/v1", tags=["catalog"])


@health.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health.get("/readyz", response_model=None)
async def readyz(runtime: RuntimeDep) -> dict[str, str] | JSONResponse:
    try:
        async with runtime.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        log.warning("database_not_ready", exc_info=True)
        return JSONResponse(error_body("not_ready", "the database does not answer"), 503)

    return {"status": "ready"}


@admin.get("/models")
async def list_models(
    principal: AdminPrincipal, runtime: RuntimeDep, connection_id: str | None = None
) -> ModelList:
    async with runtime.engine.connect() as conn:
        found = await views.list_models(conn, principal.workspace_id, connection_id=connection_id)
    return ModelList(data=[_model_out(m) for m in found])


@admin.get("/models/{model_id}")
async def get_model(model_id: str, principal: AdminPrincipal, runtime: RuntimeDep) -> ModelOut:
    async with runtime.engine.connect() as conn:
        model = await views.get_model(conn, principal.workspace_id, model_id)
    if model is None:
        raise ModelNotFound(model_id)

    return _model_out(model)


@admin.post("/models/{model_id}/enable")
async def enable_model(model_id: str, principal: AdminPrincipal, catalog: CatalogDep) -> ModelOut:
    return await _switch(catalog, principal, model_id, enable=True)


@admin.post("/models/{model_id}/disable")
async def disable_model(model_id: str, principal: AdminPrincipal, catalog: CatalogDep) -> ModelOut:
    return await _switch(catalog, principal, model_id, enable=False)


@admin.get("/connections")
async def list_connections(principal: AdminPrincipal, runtime: RuntimeDep) -> ConnectionList:
    async with runtime.engine.connect() as conn:
        found = await views.list_connections(conn, principal.workspace_id)
    return ConnectionList(
        data=[ConnectionOut.model_validate(c, from_attributes=True) for c in found]
    )


@admin.get("/connections/{connection_id}")
async def get_connection(
    connection_id: str, principal: AdminPrincipal, runtime: RuntimeDep
) -> ConnectionOut:
    async with runtime.engine.connect() as conn:
        connection = await views.get_connection(conn, principal.workspace_id, connection_id)
    if connection is None:
        raise ConnectionNotFound(connection_id)

    return ConnectionOut.model_validate(connection, from_attributes=True)


@admin.post("/connections/{connection_id}/sync")
async def sync_connection(
    connection_id: str, principal: AdminPrincipal, catalog: CatalogDep
) -> SyncOut:
    """List the connection's models now; a failed listing is a result (``ok`` false), not an error."""
    result = await catalog.sync(
        connection_id, workspace_id=principal.workspace_id, actor=_actor(principal)
    )
    return _sync_out(result)


async def _switch(
    catalog: Catalog, principal: Principal, model_id: str, *, enable: bool
) -> ModelOut:
    outcome = await catalog.switch(
        model_id, workspace_id=principal.workspace_id, enable=enable, actor=_actor(principal)
    )
    if outcome.decision is Switch.RETIRED:
        raise ApiError(
            409, "model_retired", f"model {model_id!r} is retired: its provider no longer offers it"
        )

    return _model_out(outcome.model)


def _actor(principal: Principal) -> Actor:
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return Actor(
        workspace_id=principal.workspace_id,
        actor_id=principal.user_id,
        correlation_id=request_id if isinstance(request_id, str) else None,
    )


def _model_out(model: views.ModelView) -> ModelOut:
    return ModelOut.model_validate(model, from_attributes=True)


def _sync_out(result: SyncResult) -> SyncOut:
    return SyncOut.model_validate(result, from_attributes=True)


def install_errors(app: FastAPI) -> None:
    """The one place the catalog's exceptions become HTTP answers."""

    @app.exception_handler(CatalogError)
    async def _catalog_error(_request: Request, error: CatalogError) -> JSONResponse:
        if isinstance(error, NotFound):
            return JSONResponse(error_body("not_found", str(error)), 404)

        if isinstance(error, ConnectionDisconnected):
            return JSONResponse(error_body("connection_disconnected", str(error)), 409)

        log.error("catalog_error_unhandled", error=str(error))
        return JSONResponse(error_body("internal", "the catalog could not do that"), 500)
