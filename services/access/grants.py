"""Who may use a model, and which models a member may use, with the rules that say so.

Both answers read the rules together with group memberships and apply the domain's one
definition of what a rule grants (``domain.grants_to``), the same one the proxy's view
follows from the events. Whether the model is enabled comes with each answer, since a
rule opens a model only while catalog has it enabled.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from services.access import queries
from services.access.domain import (
    GrantedModel,
    Grantee,
    Member,
    Model,
    NotFound,
    granted_models,
    grantees,
)


async def who_may_use(
    conn: AsyncConnection, workspace_id: str, model_id: str
) -> tuple[Model, list[Grantee]]:
    """Every active member the model's rules reach, each with the rules that do.

    The answer is not paged: with a workspace rule it names every active member, which
    is fine for thousands of people and will want paging for far larger workspaces.
    """
    model = await queries.model(conn, workspace_id, model_id)
    if model is None:
        raise NotFound("model_not_found", f"no model {model_id} in this workspace")

    rules = await queries.rules_of(conn, workspace_id, model_id)
    if not rules:
        return model, []

    members = await queries.members(conn, workspace_id)
    memberships = await queries.memberships(conn, workspace_id)
    return model, grantees(rules, members, memberships)


async def models_of(
    conn: AsyncConnection, workspace_id: str, user_id: str
) -> tuple[Member, list[GrantedModel]]:
    """Every model (not retired) the rules give one member, each with the rules that do."""
    member = await queries.member(conn, workspace_id, user_id)
    if member is None:
        raise NotFound("member_not_found", f"no member {user_id} in this workspace")

    groups = await queries.groups_of(conn, workspace_id, user_id)
    rules = await queries.rules_reaching(conn, workspace_id, user_id, groups)
    models = await queries.models_by_id(conn, workspace_id, {r.model_id for r in rules})
    return member, granted_models(member, rules, models, groups)
