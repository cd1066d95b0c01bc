"""Workspaces and their members: adding, deactivating, reactivating, roles, removal.

Deactivating suspends a member: their tokens, groups and rules stay but open nothing,
and reactivating brings all of it back. Removing ends the membership for good: the
member's tokens are revoked, they leave every group, the rules naming them are revoked,
they are deactivated, and no read of the workspace finds them again. Their events and
their row stay, so the log and any record of their id still say who they were; the
email is released, so the same person can be added again later, as a new member.

The log records these changes with the member events that exist: ``MemberAdded`` is
appended again on a member's stream with the role they hold from then on when they are
reactivated or their role changes (the first one follows ``UserCreated``), and a
removal is ``MemberDeactivated`` (appended even when the member was already deactivated)
followed by the token and rule revocations and group removals it causes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import structlog
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.access import queries
from services.access.domain import (
    Conflict,
    Member,
    NotFound,
    check_may_assign,
    check_may_change_role,
    check_may_deactivate,
    check_may_reactivate,
    check_may_remove,
    email_key,
    normalise_email,
)
from services.access.handlers.context import Caller, violates
from services.access.handlers.tokens import IssuedToken, insert_token
from services.access.tables import group_members, rules, tokens, users, workspaces
from shared.events.envelope import new_id, utcnow
from shared.events.schemas import (
    AccessRevoked,
    EventData,
    GroupMemberRemoved,
    MemberAdded,
    MemberDeactivated,
    Role,
    TokenRevoked,
    UserCreated,
    WorkspaceCreated,
)
from shared.events.store import Actor
from shared.runtime import Runtime

log = structlog.get_logger(__name__)

# Events a command has decided on, with their streams, waiting to be appended together.
Pending = list[tuple[str, EventData]]

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
        target = await _lock_for_standing_change(conn, caller, user_id)
        if not target.active:
            return target

        owners = await queries.active_owner_count(conn, caller.workspace_id)
        check_may_deactivate(caller.principal.role, target, owners)
        await _append(runtime, conn, caller, await _deactivation(conn, target))

    runtime.events_committed()
    log.info("member_deactivated", member_id=user_id)
    return replace(target, active=False)


async def reactivate_member(runtime: Runtime, caller: Caller, user_id: str) -> Member:
    async with runtime.engine.begin() as conn:
        target = await _lock_for_standing_change(conn, caller, user_id)
        if target.active:
            return target

        check_may_reactivate(caller.principal.role, target)
        await conn.execute(
            update(users).where(users.c.id == user_id).values(active=True, deactivated_at=None)
        )
        event = MemberAdded(user_id=user_id, role=target.role)
        await _append(runtime, conn, caller, [(f"user-{user_id}", event)])

    runtime.events_committed()
    log.info("member_reactivated", member_id=user_id)
    return replace(target, active=True)


async def change_role(runtime: Runtime, caller: Caller, user_id: str, role: Role) -> Member:
    async with runtime.engine.begin() as conn:
        target = await _lock_for_standing_change(conn, caller, user_id)
        if target.role == role:
            return target

        owners = await queries.active_owner_count(conn, caller.workspace_id)
        check_may_change_role(caller.principal.role, target, role, owners)
        await conn.execute(update(users).where(users.c.id == user_id).values(role=role))
        event = MemberAdded(user_id=user_id, role=role)
        await _append(runtime, conn, caller, [(f"user-{user_id}", event)])

    runtime.events_committed()
    log.info("member_role_changed", member_id=user_id, role=role)
    return replace(target, role=role)


async def remove_member(runtime: Runtime, caller: Caller, user_id: str) -> None:
    async with runtime.engine.begin() as conn:
        target = await _lock_for_standing_change(conn, caller, user_id)
        owners = await queries.active_owner_count(conn, caller.workspace_id)
        check_may_remove(caller.principal.role, target, owners)

        # Deactivation comes first in the log: it alone stops every token of theirs at
        # the proxy. It is recorded even for a member already deactivated, as the removal.
        pending = await _deactivation(conn, target)
        pending += await _token_revocations(conn, user_id)
        pending += await _group_departures(conn, user_id)
        pending += await _rule_revocations(conn, caller.workspace_id, user_id)
        await conn.execute(
            update(users).where(users.c.id == user_id).values(removed_at=utcnow(), email_key=None)
        )
        # Appends lock the events table until commit, so they come after every row change:
        # a command holding a row this one needs is never left waiting on that lock.
        await _append(runtime, conn, caller, pending)

    runtime.events_committed()
    log.info("member_removed", member_id=user_id, events=len(pending))


async def _lock_for_standing_change(conn: AsyncConnection, caller: Caller, user_id: str) -> Member:
    # Locking the workspace serialises changes to its members' standing, so two owners
    # cannot demote, deactivate or remove each other at once and leave it without one.
    await conn.execute(
        select(workspaces.c.id).where(workspaces.c.id == caller.workspace_id).with_for_update()
    )
    target = await queries.member(conn, caller.workspace_id, user_id, for_update=True)
    if target is None:
        raise NotFound("member_not_found", f"no member {user_id} in this workspace")

    return target


async def _append(
    runtime: Runtime, conn: AsyncConnection, caller: Caller, pending: Pending
) -> None:
    for stream_id, event in pending:
        await runtime.store.append(conn, stream_id, [event], actor=caller.actor)


async def _deactivation(conn: AsyncConnection, target: Member) -> Pending:
    if target.active:
        await conn.execute(
            update(users)
            .where(users.c.id == target.id)
            .values(active=False, deactivated_at=utcnow())
        )
    return [(f"user-{target.id}", MemberDeactivated(user_id=target.id))]


async def _token_revocations(conn: AsyncConnection, user_id: str) -> Pending:
    statement = (
        update(tokens)
        .where(tokens.c.user_id == user_id, tokens.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .returning(tokens.c.id)
    )
    return [
        (f"token-{row.id}", TokenRevoked(token_id=row.id, user_id=user_id))
        for row in await conn.execute(statement)
    ]


async def _group_departures(conn: AsyncConnection, user_id: str) -> Pending:
    statement = (
        delete(group_members)
        .where(group_members.c.user_id == user_id)
        .returning(group_members.c.group_id)
    )
    return [
        (f"group-{row.group_id}", GroupMemberRemoved(group_id=row.group_id, user_id=user_id))
        for row in await conn.execute(statement)
    ]


async def _rule_revocations(conn: AsyncConnection, workspace_id: str, user_id: str) -> Pending:
    statement = (
        delete(rules)
        .where(
            rules.c.workspace_id == workspace_id,
            rules.c.principal_kind == "user",
            rules.c.principal_id == user_id,
        )
        .returning(rules.c.id, rules.c.model_id)
    )
    return [
        (
            f"rule-{row.id}",
            AccessRevoked(
                rule_id=row.id, model_id=row.model_id, principal_kind="user", principal_id=user_id
            ),
        )
        for row in await conn.execute(statement)
    ]


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
