"""Workspaces and their members."""

from __future__ import annotations

from dataclasses import dataclass, replace

import structlog
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.access import queries
from services.access.domain import (
    Conflict,
    Member,
    NotFound,
    check_may_assign,
    check_may_deactivate,
    email_key,
    normalise_email,
)
from services.access.handlers.context import Caller, violates
from services.access.handlers.tokens import IssuedToken, insert_token
from services.access.tables import users, workspaces
from shared.events.envelope import new_id, utcnow
from shared.events.schemas import (
    MemberAdded,
    MemberDeactivated,
    Role,
    UserCreated,
    WorkspaceCreated,
)
from shared.events.store import Actor
from shared.runtime import Runtime

log = structlog.get_logger(__name__)

OPERATOR_ACTOR_ID = "operator"
INITIAL_TOKEN_NAME = "initial"  # noqa: S105 - the name a token is listed under, not a secret


@dataclass(frozen=True, slots=True)
class NewWorkspace:
    id: str
    name: str
    owner: Member
    token: IssuedToken


async def create_workspace(
    runtime: Runtime, *, name: str, owner_email: str, owner_name: str, correlation_id: str | None
) -> NewWorkspace:
    """The operator's command: a workspace, its first owner, and the owner's first token."""
    email = normalise_email(owner_email)
    workspace_id, now = new_id(), utcnow()
    owner = Member(new_id(), workspace_id, email, owner_name, "owner", active=True)
    actor = Actor(workspace_id, OPERATOR_ACTOR_ID, correlation_id)

    async with runtime.engine.begin() as conn:
        await conn.execute(insert(workspaces).values(id=workspace_id, name=name, created_at=now))
        await runtime.store.append(
            conn,
            f"workspace-{workspace_id}",
            [WorkspaceCreated(workspace_name=name)],
            actor=actor,
            expected_version=0,
        )
        await _insert_member(runtime, conn, owner, actor)
        issued = await insert_token(runtime, conn, owner, INITIAL_TOKEN_NAME, None, actor)

    runtime.events_committed()
    log.info("workspace_created", workspace_id=workspace_id, owner_id=owner.id)
    return NewWorkspace(workspace_id, name, owner, issued)


async def add_member(
    runtime: Runtime, caller: Caller, *, email: str, display_name: str, role: Role
) -> Member:
    check_may_assign(caller.principal.role, role)
    member = Member(new_id(), caller.workspace_id, normalise_email(email), display_name, role, True)

    try:
        async with runtime.engine.begin() as conn:
            await _insert_member(runtime, conn, member, caller.actor)
    except IntegrityError as error:
        if violates(error, "users_workspace_email_key"):
            raise Conflict("email_taken", f"{member.email} is already a member") from error
        raise

    runtime.events_committed()
    log.info("member_added", member_id=member.id, role=role)
    return member


async def deactivate_member(runtime: Runtime, caller: Caller, user_id: str) -> Member:
    async with runtime.engine.begin() as conn:
        # Serialises owner changes in a workspace, so two owners cannot deactivate each
        # other at once and leave it without one.
        await conn.execute(
            select(workspaces.c.id).where(workspaces.c.id == caller.workspace_id).with_for_update()
        )
        target = await queries.member(conn, caller.workspace_id, user_id, for_update=True)
        if target is None:
            raise NotFound("member_not_found", f"no member {user_id} in this workspace")

        if not target.active:
            return target

        owners = await queries.active_owner_count(conn, caller.workspace_id)
        check_may_deactivate(caller.principal.role, target, owners)
        await conn.execute(
            update(users).where(users.c.id == user_id).values(active=False, deactivated_at=utcnow())
        )
        await runtime.store.append(
            conn, f"user-{user_id}", [MemberDeactivated(user_id=user_id)], actor=caller.actor
        )

    runtime.events_committed()
    log.info("member_deactivated", member_id=user_id)
    return replace(target, active=False)


async def _insert_member(
    runtime: Runtime, conn: AsyncConnection, member: Member, actor: Actor
) -> None:
    await conn.execute(
        insert(users).values(
            id=member.id,
            workspace_id=member.workspace_id,
            email=member.email,
            email_key=email_key(member.email),
            display_name=member.display_name,
            role=member.role,
            active=True,
            created_at=utcnow(),
        )
    )
    created = UserCreated(user_id=member.id, email=member.email, display_name=member.display_name)
    added = MemberAdded(user_id=member.id, role=member.role)
    await runtime.store.append(
        conn, f"user-{member.id}", [created, added], actor=actor, expected_version=0
    )
