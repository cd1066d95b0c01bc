"""The catalog's HTTP routes: health, and the admin API under ``/catalog/v1``.

Routes parse, call a handler or a view, and shape the answer. Every admin route works in
the caller's workspace only; ids from elsewhere are answered 404, like unknown ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text

from services.catalog import views
from services.catalog.domain import (
    InvalidPolicy,
    Switch,
    SyncResult,
    new_model_policy,
)
from services.catalog.errors import (
    CatalogError,
    ConnectionDisconnected,
    ConnectionNotFound,
    ModelNotFound,
    NotFound,
    Refused,
    UnknownWorkspaces,
)
from services.catalog.handlers import Catalog
from services.catalog.settings import Settings
from shared.events.schemas import NewModelAction as NewModelActionName
from shared.events.store import Actor
from shared.http import ApiError, error_body
from shared.principal import AdminPrincipal, Principal
from shared.providers import known_kinds
from shared.runtime import Runtime

log = structlog.get_logger(__name__)

MAX_BULK = 500
MAX_PAGE = 500
Capability = Literal["tools", "vision", "audio", "image_output", "embeddings"]


class PriceOut(BaseModel):
    currency: Literal["USD"] = "USD"
    unit: Literal["per_million_tokens"] = "per_million_tokens"
    input: float
    output: float
    cached_input: float | None


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
    updated_at: datetime
    retired_at: datetime | None
    display_name: str | None
    family: str | None
    context_window: int | None
    input_modalities: list[str]
    output_modalities: list[str]
    supports_tools: bool | None
    capabilities: list[str]
    # None, with price_unknown true, when nobody has priced the model: never "free".
    price: PriceOut | None
    price_unknown: bool
    high_cost: bool
    successor: str | None
    # "byom": from one of the workspace's own connections; "managed": offered by the
    # install's operator and called through the install's connection.
    source: Literal["byom", "managed"]
    # A managed model the operator no longer offers: it cannot be enabled or called.
    withdrawn: bool


class ModelList(BaseModel):
    data: list[ModelOut]
    # Pass as ``cursor`` for the next page; None on the last page.
    next_cursor: str | None = None


class ModelIds(BaseModel):
    model_ids: list[str] = Field(min_length=1, max_length=MAX_BULK)


class BulkError(BaseModel):
    model_id: str
    code: str
    message: str


class BulkOut(BaseModel):
    """The models switched or already as asked, and those that could not be."""

    data: list[ModelOut]
    changed: list[str]
    errors: list[BulkError]


class NewModelPolicyIn(BaseModel):
    action: NewModelActionName
    group_ids: list[str] = Field(default_factory=list, max_length=100)


class NewModelPolicyOut(BaseModel):
    action: NewModelActionName
    group_ids: list[str]


class ConnectionOut(BaseModel):
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
    new_model_policy: NewModelPolicyOut


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


def _thresholds(request: Request) -> views.CostThresholds:
    settings: Settings = request.app.state.settings
    return views.CostThresholds(
        settings.high_cost_input_per_million, settings.high_cost_output_per_million
    )


CatalogDep = Annotated[Catalog, Depends(_catalog)]
RuntimeDep = Annotated[Runtime, Depends(_runtime)]
ThresholdsDep = Annotated[views.CostThresholds, Depends(_thresholds)]

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
    principal: AdminPrincipal,
    runtime: RuntimeDep,
    thresholds: ThresholdsDep,
    q: Annotated[str | None, Query(max_length=200, description="part of the name")] = None,
    provider: str | None = None,
    connection_id: str | None = None,
    capability: Capability | None = None,
    enabled: bool | None = None,
    retired: bool | None = None,
    price_unknown: bool | None = None,
    high_cost: bool | None = None,
    source: Literal["byom", "managed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> ModelList:
    """The workspace's models in name order, a page at a time, narrowed by any filters.

    Managed models the operator has withdrawn are left out.
    """
    if provider is not None and provider not in known_kinds():
        # An unknown kind would match nothing; a typo should not look like an empty catalog.
        raise ApiError(
            422, "invalid_request", f"provider must be one of: {', '.join(known_kinds())}"
        )

    criteria = views.ModelFilter(
        query=q,
        provider=provider,
        connection_id=connection_id,
        capability=capability,
        enabled=enabled,
        retired=retired,
        price_unknown=price_unknown,
        high_cost=high_cost,
        source=source,
    )
    try:
        async with runtime.engine.connect() as conn:
            page = await views.list_models(
                conn, principal.workspace_id, thresholds, criteria, limit=limit, cursor=cursor
            )
    except views.InvalidCursor as error:
        raise ApiError(422, "invalid_cursor", str(error)) from None

    return ModelList(data=[model_out(m) for m in page.models], next_cursor=page.next_cursor)


@admin.post("/models/enable")
async def enable_models(
    body: ModelIds,
    principal: AdminPrincipal,
    catalog: CatalogDep,
    runtime: RuntimeDep,
    thresholds: ThresholdsDep,
) -> BulkOut:
    """Enable several models at once; retired and unknown ids are reported, not fatal."""
    return await _switch_many(catalog, runtime, thresholds, principal, body.model_ids, enable=True)


@admin.post("/models/disable")
async def disable_models(
    body: ModelIds,
    principal: AdminPrincipal,
    catalog: CatalogDep,
    runtime: RuntimeDep,
    thresholds: ThresholdsDep,
) -> BulkOut:
    return await _switch_many(catalog, runtime, thresholds, principal, body.model_ids, enable=False)


@admin.get("/models/{model_id}")
async def get_model(
    model_id: str, principal: AdminPrincipal, runtime: RuntimeDep, thresholds: ThresholdsDep
) -> ModelOut:
    return await _read_model(runtime, principal.workspace_id, model_id, thresholds)


@admin.post("/models/{model_id}/enable")
async def enable_model(
    model_id: str,
    principal: AdminPrincipal,
    catalog: CatalogDep,
    runtime: RuntimeDep,
    thresholds: ThresholdsDep,
) -> ModelOut:
    return await _switch(catalog, runtime, thresholds, principal, model_id, enable=True)


@admin.post("/models/{model_id}/disable")
async def disable_model(
    model_id: str,
    principal: AdminPrincipal,
    catalog: CatalogDep,
    runtime: RuntimeDep,
    thresholds: ThresholdsDep,
) -> ModelOut:
    return await _switch(catalog, runtime, thresholds, principal, model_id, enable=False)


@admin.get("/connections")
async def list_connections(principal: AdminPrincipal, runtime: RuntimeDep) -> ConnectionList:
    async with runtime.engine.connect() as conn:
        found = await views.list_connections(conn, principal.workspace_id)
    return ConnectionList(data=[connection_out(c) for c in found])


@admin.get("/connections/{connection_id}")
async def get_connection(
    connection_id: str, principal: AdminPrincipal, runtime: RuntimeDep
) -> ConnectionOut:
    async with runtime.engine.connect() as conn:
        connection = await views.get_connection(conn, principal.workspace_id, connection_id)
    if connection is None:
        raise ConnectionNotFound(connection_id)

    return connection_out(connection)


@admin.put("/connections/{connection_id}/new-model-policy")
async def set_new_model_policy(
    connection_id: str, body: NewModelPolicyIn, principal: AdminPrincipal, catalog: CatalogDep
) -> NewModelPolicyOut:
    """What this connection's syncs do with models they discover from now on.

    ``disabled`` keeps them off (the default); ``enable_for_workspace`` enables each and
    grants it to the whole workspace; ``enable_for_groups`` enables each and grants it to
    ``group_ids``. The grants are made by access, as the system, from the model events.
    """
    try:
        policy = new_model_policy(body.action, body.group_ids)
    except InvalidPolicy as error:
        raise ApiError(422, "invalid_policy", str(error)) from None

    await catalog.set_new_model_policy(
        connection_id, policy, workspace_id=principal.workspace_id, actor=actor_of(principal)
    )
    return NewModelPolicyOut(action=body.action, group_ids=list(policy.group_ids))


@admin.post("/connections/{connection_id}/sync")
async def sync_connection(
    connection_id: str, principal: AdminPrincipal, catalog: CatalogDep
) -> SyncOut:
    """List the connection's models now; a failed listing is a result (``ok`` false), not an error."""
    result = await catalog.sync(
        connection_id, workspace_id=principal.workspace_id, actor=actor_of(principal)
    )
    return sync_out(result)


async def _switch(
    catalog: Catalog,
    runtime: Runtime,
    thresholds: views.CostThresholds,
    principal: Principal,
    model_id: str,
    *,
    enable: bool,
) -> ModelOut:
    decision = await catalog.switch(
        model_id, workspace_id=principal.workspace_id, enable=enable, actor=actor_of(principal)
    )
    if decision is Switch.RETIRED:
        raise ApiError(409, "model_retired", _retired_message(model_id))

    if decision is Switch.WITHDRAWN:
        raise ApiError(409, "model_withdrawn", _withdrawn_message(model_id))

    return await _read_model(runtime, principal.workspace_id, model_id, thresholds)


async def _switch_many(
    catalog: Catalog,
    runtime: Runtime,
    thresholds: views.CostThresholds,
    principal: Principal,
    model_ids: list[str],
    *,
    enable: bool,
) -> BulkOut:
    outcome = await catalog.switch_many(
        model_ids, workspace_id=principal.workspace_id, enable=enable, actor=actor_of(principal)
    )
    errors = [
        BulkError(model_id=mid, code="not_found", message=str(ModelNotFound(mid)))
        for mid in outcome.not_found
    ]
    errors += [
        BulkError(model_id=mid, code="model_retired", message=_retired_message(mid))
        for mid, decision in outcome.decisions.items()
        if decision is Switch.RETIRED
    ]
    errors += [
        BulkError(model_id=mid, code="model_withdrawn", message=_withdrawn_message(mid))
        for mid, decision in outcome.decisions.items()
        if decision is Switch.WITHDRAWN
    ]
    refused = (Switch.RETIRED, Switch.WITHDRAWN)
    settled = [mid for mid, d in outcome.decisions.items() if d not in refused]
    async with runtime.engine.connect() as conn:
        found = await views.get_models(conn, principal.workspace_id, settled, thresholds)
    return BulkOut(
        data=[model_out(m) for m in found],
        changed=[mid for mid, d in outcome.decisions.items() if d is Switch.CHANGE],
        errors=errors,
    )


async def _read_model(
    runtime: Runtime, workspace_id: str, model_id: str, thresholds: views.CostThresholds
) -> ModelOut:
    async with runtime.engine.connect() as conn:
        model = await views.get_model(conn, workspace_id, model_id, thresholds)
    if model is None:
        raise ModelNotFound(model_id)

    return model_out(model)


def _retired_message(model_id: str) -> str:
    return f"model {model_id!r} is retired: its provider no longer offers it"


def _withdrawn_message(model_id: str) -> str:
    return f"model {model_id!r} is no longer offered to this workspace by the install's operator"


def actor_of(principal: Principal) -> Actor:
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return Actor(
        workspace_id=principal.workspace_id,
        actor_id=principal.user_id,
        correlation_id=request_id if isinstance(request_id, str) else None,
    )


def model_out(model: views.ModelView) -> ModelOut:
    details = model.details
    price = details.price
    return ModelOut(
        id=model.id,
        name=model.name,
        upstream_id=model.upstream_id,
        connection_id=model.connection_id,
        provider=model.provider,
        enabled=model.enabled,
        retired=model.retired,
        owned_by=model.owned_by,
        discovered_at=model.discovered_at,
        updated_at=model.updated_at,
        retired_at=model.retired_at,
        display_name=details.display_name,
        family=details.family,
        context_window=details.context_window,
        input_modalities=list(details.input_modalities),
        output_modalities=list(details.output_modalities),
        supports_tools=details.supports_tools,
        capabilities=list(details.capabilities),
        price=(
            PriceOut(input=price.input, output=price.output, cached_input=price.cached_input)
            if price
            else None
        ),
        price_unknown=model.price_unknown,
        high_cost=model.high_cost,
        successor=model.successor,
        source="managed" if model.source == "managed" else "byom",
        withdrawn=model.withdrawn,
    )


def connection_out(connection: views.ConnectionView) -> ConnectionOut:
    return ConnectionOut(
        id=connection.id,
        provider=connection.provider,
        name=connection.name,
        base_url=connection.base_url,
        status=connection.status,
        last_sync_at=connection.last_sync_at,
        last_sync_ok=connection.last_sync_ok,
        last_sync_reason=connection.last_sync_reason,
        last_sync_success_at=connection.last_sync_success_at,
        sync_failures=connection.sync_failures,
        next_sync_at=connection.next_sync_at,
        # Validated, not cast: a value the API does not know would fail loudly here.
        new_model_policy=NewModelPolicyOut.model_validate(
            {"action": connection.new_model_action, "group_ids": connection.new_model_group_ids}
        ),
    )


def sync_out(result: SyncResult) -> SyncOut:
    return SyncOut.model_validate(result, from_attributes=True)


def install_errors(app: FastAPI) -> None:
    """The one place the catalog's exceptions become HTTP answers."""

    @app.exception_handler(CatalogError)
    async def _catalog_error(_request: Request, error: CatalogError) -> JSONResponse:
        if isinstance(error, NotFound):
            return JSONResponse(error_body("not_found", str(error)), 404)

        if isinstance(error, ConnectionDisconnected):
            return JSONResponse(error_body("connection_disconnected", str(error)), 409)

        if isinstance(error, Refused):
            return JSONResponse(error_body(error.code, str(error)), 409)

        if isinstance(error, UnknownWorkspaces):
            return JSONResponse(error_body("unknown_workspace", str(error)), 422)

        log.error("catalog_error_unhandled", error=str(error))
        return JSONResponse(error_body("internal", "the catalog could not do that"), 500)
