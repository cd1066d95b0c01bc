"""The install operator's routes, under ``/catalog/v1/install``: the install connections'
models, and which workspaces each is offered to.

They take the operator's token (``BYOM_OPERATOR_TOKEN``), never a workspace admin's: the
install's models are the operator's to offer. Workspaces see what is offered to them in
their own model list, with ``source`` "managed".
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, Field

from services.catalog import views
from services.catalog.api import (
    CatalogDep,
    ConnectionList,
    ConnectionOut,
    ModelOut,
    RuntimeDep,
    SyncOut,
    ThresholdsDep,
    connection_out,
    model_out,
    sync_out,
)
from services.catalog.domain import INSTALL_SCOPE, Audience
from services.catalog.errors import ConnectionNotFound
from services.catalog.offers import Offers
from services.catalog.settings import Settings
from shared.events.store import Actor
from shared.http import ApiError
from shared.principal import TOKEN_PREFIX, bearer_token

router = APIRouter(prefix="/catalog/v1/install", tags=["install"])
OPERATOR_ACTOR_ID = "operator"
MAX_AUDIENCE = 1000


async def _operator(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> None:
    settings: Settings = request.app.state.settings
    expected = settings.operator_token.get_secret_value()
    presented = bearer_token(authorization, None)
    if presented is None:
        raise ApiError(401, "unauthenticated", "the operator token is required")

    if expected and _same_secret(presented.reveal(), expected):
        return

    if presented.reveal().startswith(TOKEN_PREFIX):
        raise ApiError(403, "forbidden", "this route is the install operator's, not a workspace's")

    raise ApiError(401, "unauthenticated", "the operator token is required")


def _same_secret(presented: str, expected: str) -> bool:
    # Comparing digests keeps the comparison constant-time whatever the lengths.
    return hmac.compare_digest(
        hashlib.sha256(presented.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


def _offers(request: Request) -> Offers:
    offers: Offers = request.app.state.offers
    return offers


Operator = Annotated[None, Depends(_operator)]
OffersDep = Annotated[Offers, Depends(_offers)]


class OfferIn(BaseModel):
    all_workspaces: bool = Field(
        default=False, description="every workspace, including those created later"
    )
    workspace_ids: list[str] = Field(default_factory=list, max_length=MAX_AUDIENCE)


class OfferOut(BaseModel):
    all_workspaces: bool
    workspace_ids: list[str]


class OfferChangeOut(OfferOut):
    model_id: str
    offered_to: list[str] = Field(description="workspaces that gained the model just now")
    withdrawn_from: list[str] = Field(description="workspaces that lost it just now")


class InstallModelOut(ModelOut):
    offer: OfferOut | None = Field(description="who the model is offered to; null if nobody")


class InstallModelList(BaseModel):
    data: list[InstallModelOut]
    next_cursor: str | None = None


@router.get("/connections")
async def list_install_connections(_op: Operator, runtime: RuntimeDep) -> ConnectionList:
    async with runtime.engine.connect() as conn:
        found = await views.list_connections(conn, INSTALL_SCOPE)
    return ConnectionList(data=[connection_out(c) for c in found])


@router.get("/connections/{connection_id}")
async def get_install_connection(
    connection_id: str, _op: Operator, runtime: RuntimeDep
) -> ConnectionOut:
    async with runtime.engine.connect() as conn:
        found = await views.get_connection(conn, INSTALL_SCOPE, connection_id)
    if found is None:
        raise ConnectionNotFound(connection_id)

    return connection_out(found)


@router.post("/connections/{connection_id}/sync")
async def sync_install_connection(
    connection_id: str, _op: Operator, catalog: CatalogDep
) -> SyncOut:
    result = await catalog.sync(connection_id, workspace_id=INSTALL_SCOPE, actor=_operator_actor())
    return sync_out(result)


@router.get("/models")
async def list_install_models(
    _op: Operator,
    runtime: RuntimeDep,
    thresholds: ThresholdsDep,
    connection_id: str | None = None,
    retired: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> InstallModelList:
    """The install connections' models in name order, each with who it is offered to."""
    criteria = views.ModelFilter(connection_id=connection_id, retired=retired)
    try:
        async with runtime.engine.connect() as conn:
            page = await views.list_models(
                conn, INSTALL_SCOPE, thresholds, criteria, limit=limit, cursor=cursor
            )
            audiences = await views.offers_of(conn, [m.id for m in page.models])
    except views.InvalidCursor as error:
        raise ApiError(422, "invalid_cursor", str(error)) from None

    return InstallModelList(
        data=[_install_model_out(m, audiences.get(m.id)) for m in page.models],
        next_cursor=page.next_cursor,
    )


@router.put("/models/{model_id}/offer")
async def offer_model(
    model_id: str, body: OfferIn, _op: Operator, offers: OffersDep
) -> OfferChangeOut:
    """Offer the model to exactly these workspaces (or all); left-out ones lose it."""
    if body.all_workspaces and body.workspace_ids:
        raise ApiError(422, "invalid_offer", "name workspace_ids or set all_workspaces, not both")

    audience = Audience(body.all_workspaces, tuple(dict.fromkeys(body.workspace_ids)))
    return await _offer(offers, model_id, audience)


@router.delete("/models/{model_id}/offer", status_code=204)
async def withdraw_model(model_id: str, _op: Operator, offers: OffersDep) -> Response:
    """Stop offering the model to any workspace."""
    await _offer(offers, model_id, Audience())
    return Response(status_code=204)


async def _offer(offers: Offers, model_id: str, audience: Audience) -> OfferChangeOut:
    actor = _operator_actor()
    result = await offers.offer(
        model_id, audience, actor_id=OPERATOR_ACTOR_ID, correlation_id=actor.correlation_id
    )
    return OfferChangeOut(
        model_id=result.model_id,
        all_workspaces=result.audience.all_workspaces,
        workspace_ids=list(result.audience.workspace_ids),
        offered_to=list(result.offered_to),
        withdrawn_from=list(result.withdrawn_from),
    )


def _install_model_out(model: views.ModelView, audience: Audience | None) -> InstallModelOut:
    offer = (
        OfferOut(all_workspaces=audience.all_workspaces, workspace_ids=list(audience.workspace_ids))
        if audience is not None and (audience.all_workspaces or audience.workspace_ids)
        else None
    )
    return InstallModelOut(**model_out(model).model_dump(), offer=offer)


def _operator_actor() -> Actor:
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    # The install's own changes belong to no workspace.
    return Actor(
        workspace_id=None,
        actor_id=OPERATOR_ACTOR_ID,
        correlation_id=request_id if isinstance(request_id, str) else None,
    )
