"""The routes behind an admin's access dialog: find people and groups, and see who may
use a model and which models a member may use, each with the rules that grant it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.access import grants, queries
from services.access.deps import AdminCaller, RuntimeDep
from services.access.domain import (
    DIRECTORY_DEFAULT_LIMIT,
    DIRECTORY_MAX_LIMIT,
    directory_query,
)
from services.access.schemas import (
    DirectoryEntryOut,
    GrantedModelOut,
    GranteeOut,
    MemberModelsOut,
    MemberOut,
    ModelGranteesOut,
    ModelOut,
    Page,
)

dialog = APIRouter(prefix="/access/v1")


@dialog.get("/directory")
async def search_directory(
    caller: AdminCaller,
    runtime: RuntimeDep,
    q: Annotated[str, Query(min_length=1, max_length=100, description="part of a name or email")],
    limit: Annotated[int, Query(ge=1, le=DIRECTORY_MAX_LIMIT)] = DIRECTORY_DEFAULT_LIMIT,
) -> Page[DirectoryEntryOut]:
    """People by name or email and groups by name, in one list, ignoring case.

    Names and emails that start with ``q`` come first, then those that contain it.
    Deactivated members are listed with ``active`` false; removed ones are not.
    """
    query = directory_query(q)
    async with runtime.engine.connect() as conn:
        found = await queries.directory(conn, caller.workspace_id, query, limit)
    return Page(data=[DirectoryEntryOut.of(entry) for entry in found])


@dialog.get("/models/{model_id}/members")
async def who_may_use(model_id: str, caller: AdminCaller, runtime: RuntimeDep) -> ModelGranteesOut:
    """Every active member some rule gives the model to, each with the rules that do.

    The model's ``enabled`` says whether those rules open it right now.
    """
    async with runtime.engine.connect() as conn:
        model, found = await grants.who_may_use(conn, caller.workspace_id, model_id)
    return ModelGranteesOut(
        model=ModelOut.of(model), data=[GranteeOut.of(grantee) for grantee in found]
    )


@dialog.get("/members/{user_id}/models")
async def models_of(user_id: str, caller: AdminCaller, runtime: RuntimeDep) -> MemberModelsOut:
    """Every model (not retired) some rule gives the member, each with the rules that do.

    A model opens for the member while it is enabled and the member is active.
    """
    async with runtime.engine.connect() as conn:
        member, found = await grants.models_of(conn, caller.workspace_id, user_id)
    return MemberModelsOut(
        member=MemberOut.of(member), data=[GrantedModelOut.of(granted) for granted in found]
    )
