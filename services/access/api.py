"""The routes of access: parse, call a handler or a query, shape the answer.

``/access/v1/...`` is the admin and self-service API, ``/access/internal/v1/introspect``
the one route other services call. Access errors become HTTP answers here. The access
dialog's reads (search, who may use what) are in ``api_dialog``.
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from services.access import queries
from services.access.auth import CallingService, Operator, TokenDirectory
from services.access.deps import AdminCaller, AnyCaller, RuntimeDep, request_id
from services.access.domain import AccessError, Conflict, Forbidden, Invalid, NotFound
from services.access.handlers import groups, members, rules, tokens, workspaces
from services.access.schemas import (
    AddMember,
    ChangeRole,
    ChangeWorkspaceSettings,
    CreateGroup,
    CreateWorkspace,
    GrantAccess,
    GroupOut,
    Introspect,
    IntrospectionOut,
    IssueToken,
    MemberOut,
    MeOut,
    Page,
    RuleOut,
    TokenCreatedOut,
    TokenOut,
    WorkspaceCreatedOut,
    WorkspaceSettingsOut,
)
from shared.http import ApiError, error_body

_STATUS: dict[type[AccessError], int] = {NotFound: 404, Conflict: 409, Forbidden: 403, Invalid: 422}


def install_access_errors(app: FastAPI) -> None:
    @app.exception_handler(AccessError)
    async def _access_error(_request: Request, error: AccessError) -> JSONResponse:
        status = next((s for cls, s in _STATUS.items() if isinstance(error, cls)), 400)
        return JSONResponse(error_body(error.code, error.message), status)


router = APIRouter(prefix="/access/v1")
internal = APIRouter(prefix="/access/internal/v1")
health = APIRouter(prefix="/access")


# workspaces and the caller


@router.post("/workspaces", status_code=201, dependencies=[Operator])
async def create_workspace(body: CreateWorkspace, runtime: RuntimeDep) -> WorkspaceCreatedOut:
    created = await members.create_workspace(
        runtime,
        name=body.name,
        owner_email=body.owner_email,
        owner_name=body.owner_name,
        correlation_id=request_id(),
    )
    return WorkspaceCreatedOut.of(created)


@router.get("/workspace/settings")
async def workspace_settings(caller: AdminCaller, runtime: RuntimeDep) -> WorkspaceSettingsOut:
    settings = await workspaces.settings_of(runtime, caller.workspace_id)
    return WorkspaceSettingsOut(
        allow_unpriced_models=settings.allow_unpriced_models, model_sources=settings.model_sources
    )


@router.patch("/workspace/settings")
async def change_workspace_settings(
    body: ChangeWorkspaceSettings, caller: AdminCaller, runtime: RuntimeDep
) -> WorkspaceSettingsOut:
    """Change the settings given; a setting left out keeps its value."""
    settings = await workspaces.change_settings(
        runtime,
        caller,
        allow_unpriced_models=body.allow_unpriced_models,
        model_sources=body.model_sources,
    )
    return WorkspaceSettingsOut(
        allow_unpriced_models=settings.allow_unpriced_models, model_sources=settings.model_sources
    )


@router.get("/me")
async def me(caller: AnyCaller, runtime: RuntimeDep) -> MeOut:
    async with runtime.engine.connect() as conn:
        member = await queries.member(conn, caller.workspace_id, caller.principal.user_id)
    if member is None:
        raise ApiError(401, "unauthenticated", "the gateway token is not valid")

    return MeOut(
        workspace_id=caller.workspace_id,
        user_id=member.id,
        role=member.role,
        token_id=caller.principal.token_id,
        email=member.email,
        display_name=member.display_name,
    )


# members


@router.post("/members", status_code=201)
async def add_member(body: AddMember, caller: AdminCaller, runtime: RuntimeDep) -> MemberOut:
    member = await members.add_member(
        runtime, caller, email=body.email, display_name=body.display_name, role=body.role
    )
    return MemberOut.of(member)


@router.get("/members")
async def list_members(caller: AdminCaller, runtime: RuntimeDep) -> Page[MemberOut]:
    async with runtime.engine.connect() as conn:
        found = await queries.members(conn, caller.workspace_id)
    return Page(data=[MemberOut.of(m) for m in found])


@router.get("/members/{user_id}")
async def get_member(user_id: str, caller: AdminCaller, runtime: RuntimeDep) -> MemberOut:
    async with runtime.engine.connect() as conn:
        member = await queries.member(conn, caller.workspace_id, user_id)
    if member is None:
        raise NotFound("member_not_found", f"no member {user_id} in this workspace")

    return MemberOut.of(member)


@router.post("/members/{user_id}/deactivate")
async def deactivate_member(user_id: str, caller: AdminCaller, runtime: RuntimeDep) -> MemberOut:
    """Suspend a member: their tokens, groups and rules stay but open nothing."""
    return MemberOut.of(await members.deactivate_member(runtime, caller, user_id))


@router.post("/members/{user_id}/reactivate")
async def reactivate_member(user_id: str, caller: AdminCaller, runtime: RuntimeDep) -> MemberOut:
    """Lift a suspension: the member's tokens, groups and rules count again."""
    return MemberOut.of(await members.reactivate_member(runtime, caller, user_id))


@router.put("/members/{user_id}/role")
async def change_role(
    user_id: str, body: ChangeRole, caller: AdminCaller, runtime: RuntimeDep
) -> MemberOut:
    """Make a member an admin or a plain member; only an owner makes or unmakes owners."""
    return MemberOut.of(await members.change_role(runtime, caller, user_id, body.role))


@router.delete("/members/{user_id}", status_code=204)
async def remove_member(user_id: str, caller: AdminCaller, runtime: RuntimeDep) -> Response:
    """End a membership for good: tokens revoked, groups left, personal rules revoked.

    The member's history stays in the log; the email may join again as a new member.
    """
    await members.remove_member(runtime, caller, user_id)
    return Response(status_code=204)


# tokens


@router.post("/members/{user_id}/tokens", status_code=201)
async def issue_member_token(
    user_id: str, body: IssueToken, caller: AdminCaller, runtime: RuntimeDep
) -> TokenCreatedOut:
    issued = await tokens.issue_token(
        runtime, caller, user_id, name=body.name, expires_at=body.expires_at
    )
    return TokenCreatedOut.of(issued)


@router.get("/members/{user_id}/tokens")
async def list_member_tokens(
    user_id: str, caller: AdminCaller, runtime: RuntimeDep
) -> Page[TokenOut]:
    async with runtime.engine.connect() as conn:
        if await queries.member(conn, caller.workspace_id, user_id) is None:
            raise NotFound("member_not_found", f"no member {user_id} in this workspace")
        found = await queries.tokens_of(conn, caller.workspace_id, user_id)
    return Page(data=[TokenOut.of(t) for t in found])


@router.post("/tokens", status_code=201)
async def issue_own_token(
    body: IssueToken, caller: AnyCaller, runtime: RuntimeDep
) -> TokenCreatedOut:
    issued = await tokens.issue_token(
        runtime, caller, caller.principal.user_id, name=body.name, expires_at=body.expires_at
    )
    return TokenCreatedOut.of(issued)


@router.get("/tokens")
async def list_own_tokens(caller: AnyCaller, runtime: RuntimeDep) -> Page[TokenOut]:
    async with runtime.engine.connect() as conn:
        found = await queries.tokens_of(conn, caller.workspace_id, caller.principal.user_id)
    return Page(data=[TokenOut.of(t) for t in found])


@router.delete("/tokens/{token_id}", status_code=204)
async def revoke_token(token_id: str, caller: AnyCaller, runtime: RuntimeDep) -> Response:
    await tokens.revoke_token(runtime, caller, token_id)
    return Response(status_code=204)


# groups


@router.post("/groups", status_code=201)
async def create_group(body: CreateGroup, caller: AdminCaller, runtime: RuntimeDep) -> GroupOut:
    return GroupOut.of(await groups.create_group(runtime, caller, name=body.name))


@router.get("/groups")
async def list_groups(caller: AdminCaller, runtime: RuntimeDep) -> Page[GroupOut]:
    async with runtime.engine.connect() as conn:
        found = await queries.all_groups(conn, caller.workspace_id)
    return Page(data=[GroupOut.of(g) for g in found])


@router.get("/groups/{group_id}/members")
async def list_group_members(
    group_id: str, caller: AdminCaller, runtime: RuntimeDep
) -> Page[MemberOut]:
    async with runtime.engine.connect() as conn:
        if await queries.group(conn, caller.workspace_id, group_id) is None:
            raise NotFound("group_not_found", f"no group {group_id} in this workspace")
        found = await queries.members_of(conn, caller.workspace_id, group_id)
    return Page(data=[MemberOut.of(m) for m in found])


@router.put("/groups/{group_id}/members/{user_id}", status_code=204)
async def add_to_group(
    group_id: str, user_id: str, caller: AdminCaller, runtime: RuntimeDep
) -> Response:
    await groups.add_to_group(runtime, caller, group_id, user_id)
    return Response(status_code=204)


@router.delete("/groups/{group_id}/members/{user_id}", status_code=204)
async def remove_from_group(
    group_id: str, user_id: str, caller: AdminCaller, runtime: RuntimeDep
) -> Response:
    await groups.remove_from_group(runtime, caller, group_id, user_id)
    return Response(status_code=204)


# access rules


@router.post("/models/{model_id}/rules", status_code=201)
async def grant_access(
    model_id: str, body: GrantAccess, caller: AdminCaller, runtime: RuntimeDep
) -> RuleOut:
    rule = await rules.grant_access(
        runtime,
        caller,
        model_id,
        principal_kind=body.principal_kind,
        principal_id=body.principal_id,
    )
    return RuleOut.of(rule)


@router.get("/models/{model_id}/rules")
async def list_rules(model_id: str, caller: AdminCaller, runtime: RuntimeDep) -> Page[RuleOut]:
    async with runtime.engine.connect() as conn:
        if await queries.model(conn, caller.workspace_id, model_id) is None:
            raise NotFound("model_not_found", f"no model {model_id} in this workspace")
        found = await queries.rules_of(conn, caller.workspace_id, model_id)
    return Page(data=[RuleOut.of(r) for r in found])


@router.delete("/models/{model_id}/rules/{rule_id}", status_code=204)
async def revoke_access(
    model_id: str, rule_id: str, caller: AdminCaller, runtime: RuntimeDep
) -> Response:
    await rules.revoke_access(runtime, caller, model_id, rule_id)
    return Response(status_code=204)


# internal


@internal.post("/introspect")
async def introspect(
    body: Introspect, _service: CallingService, request: Request
) -> IntrospectionOut:
    directory: TokenDirectory = request.app.state.introspector
    principal = await directory.lookup(body.token_hash)
    if principal is None:
        raise NotFound("token_not_found", "no live token has that hash")

    return IntrospectionOut(
        workspace_id=principal.workspace_id,
        user_id=principal.user_id,
        role=principal.role,
        token_id=principal.token_id,
    )


# health


@health.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health.get("/readyz")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    try:
        async with runtime.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        # Whatever the cause, a service that cannot reach its database takes no traffic.
        structlog.get_logger(__name__).warning("database_not_ready", exc_info=True)
        return JSONResponse(error_body("not_ready", "the database does not answer"), 503)

    return JSONResponse({"status": "ok"})
