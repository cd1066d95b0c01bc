"""The alias routes of the admin API, under ``/catalog/v1/aliases``.

An alias is named in the path; it is exact (lowercase letters, digits, '.', '_', '-'),
so what an admin creates is what members type. ``target_status`` flags an alias whose
model is disabled, retired or withdrawn: calls by it fail until the admin re-points it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from services.catalog import views
from services.catalog.aliases import Aliases
from services.catalog.api import RuntimeDep, actor_of
from services.catalog.domain import InvalidAlias, check_alias
from services.catalog.errors import AliasNotFound
from shared.http import ApiError
from shared.principal import AdminPrincipal

router = APIRouter(prefix="/catalog/v1/aliases", tags=["aliases"])


class AliasIn(BaseModel):
    model_id: str = Field(max_length=36, description="the id of one of the workspace's models")


class AliasOut(BaseModel):
    name: str
    model_id: str
    model_name: str = Field(description="the gateway name of the model the alias reaches")
    target_status: Literal["ok", "disabled", "retired", "withdrawn"] = Field(
        description="anything but ok: calls by the alias fail until it is re-pointed"
    )
    target_successor: str | None = Field(
        description="when the target is retired: the model that replaces it, if known"
    )
    created_at: datetime
    updated_at: datetime


class AliasList(BaseModel):
    data: list[AliasOut]


def _aliases(request: Request) -> Aliases:
    aliases: Aliases = request.app.state.aliases
    return aliases


AliasesDep = Annotated[Aliases, Depends(_aliases)]


@router.get("")
async def list_aliases(
    principal: AdminPrincipal, runtime: RuntimeDep, flagged: bool | None = None
) -> AliasList:
    """The workspace's aliases by name; ``flagged=true`` keeps those whose target is not ok."""
    async with runtime.engine.connect() as conn:
        found = await views.list_aliases(conn, principal.workspace_id)
    shown = [_out(a) for a in found]
    if flagged is not None:
        shown = [a for a in shown if (a.target_status != "ok") == flagged]
    return AliasList(data=shown)


@router.get("/{name}")
async def get_alias(name: str, principal: AdminPrincipal, runtime: RuntimeDep) -> AliasOut:
    async with runtime.engine.connect() as conn:
        found = await views.get_alias(conn, principal.workspace_id, name)
    if found is None:
        raise AliasNotFound(name)

    return _out(found)


@router.put("/{name}")
async def point_alias(
    name: str, body: AliasIn, principal: AdminPrincipal, aliases: AliasesDep, runtime: RuntimeDep
) -> AliasOut:
    """Create the alias, or re-point it: members' code keeps the name, calls reach the new model."""
    try:
        check_alias(name)
    except InvalidAlias as error:
        raise ApiError(422, "invalid_alias", str(error)) from None

    await aliases.point(principal.workspace_id, name, body.model_id, actor_of(principal))
    return await get_alias(name, principal, runtime)


@router.delete("/{name}", status_code=204)
async def remove_alias(name: str, principal: AdminPrincipal, aliases: AliasesDep) -> Response:
    await aliases.remove(principal.workspace_id, name, actor_of(principal))
    return Response(status_code=204)


def _out(alias: views.AliasView) -> AliasOut:
    return AliasOut(
        name=alias.name,
        model_id=alias.model_id,
        model_name=alias.model_name,
        target_status=alias.target_status.value,
        target_successor=alias.target_successor,
        created_at=alias.created_at,
        updated_at=alias.updated_at,
    )
