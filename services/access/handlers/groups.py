"""Groups of members, which rules can name."""

from __future__ import annotations

import structlog
from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.access import queries
from services.access.domain import Conflict, Group, Member, NotFound
from services.access.handlers.context import Caller, violates
from services.access.tables import group_members, groups
from shared.db import upsert
from shared.events.envelope import new_id, utcnow
from shared.events.schemas import GroupCreated, GroupMemberAdded, GroupMemberRemoved
from shared.runtime import Runtime

log = structlog.get_logger(__name__)


async def create_group(runtime: Runtime, caller: Caller, *, name: str) -> Group:
    group = Group(new_id(), caller.workspace_id, name)

    try:
        async with runtime.engine.begin() as conn:
            await conn.execute(
                insert(groups).values(
                    id=group.id,
                    workspace_id=group.workspace_id,
                    name=name,
                    name_key=name.lower(),
                    created_at=utcnow(),
                )
            )
            await runtime.store.append(
                conn,
                f"group-{group.id}",
                [GroupCreated(group_id=group.id, group_name=name)],
                actor=caller.actor,
                expected_version=0,
            )
    except IntegrityError as error:
        if violates(error, "groups_workspace_name_key"):
            raise Conflict("group_name_taken", f"a group named {name!r} exists") from error
        raise

    runtime.events_committed()
    log.info("group_created", group_id=group.id)
    return group


async def add_to_group(runtime: Runtime, caller: Caller, group_id: str, user_id: str) -> None:
    async with runtime.engine.begin() as conn:
        member = await _group_and_member(conn, caller, group_id, user_id)
        if not member.active:
            raise Conflict("member_inactive", f"member {user_id} is deactivated")

        statement = (
            upsert(conn, group_members)
            .values(group_id=group_id, user_id=user_id, added_at=utcnow())
            .on_conflict_do_nothing()
            .returning(group_members.c.user_id)
        )
        if (await conn.execute(statement)).first() is None:
            return

        await runtime.store.append(
            conn,
            f"group-{group_id}",
            [GroupMemberAdded(group_id=group_id, user_id=user_id)],
            actor=caller.actor,
        )

    runtime.events_committed()
    log.info("group_member_added", group_id=group_id, member_id=user_id)


async def remove_from_group(runtime: Runtime, caller: Caller, group_id: str, user_id: str) -> None:
    async with runtime.engine.begin() as conn:
        await _group_and_member(conn, caller, group_id, user_id)
        statement = (
            delete(group_members)
            .where(group_members.c.group_id == group_id, group_members.c.user_id == user_id)
            .returning(group_members.c.user_id)
        )
        if (await conn.execute(statement)).first() is None:
            return

        await runtime.store.append(
            conn,
            f"group-{group_id}",
            [GroupMemberRemoved(group_id=group_id, user_id=user_id)],
            actor=caller.actor,
        )

    runtime.events_committed()
    log.info("group_member_removed", group_id=group_id, member_id=user_id)


async def _group_and_member(
    conn: AsyncConnection, caller: Caller, group_id: str, user_id: str
) -> Member:
    if await queries.group(conn, caller.workspace_id, group_id) is None:
        raise NotFound("group_not_found", f"no group {group_id} in this workspace")

    # The lock waits for a removal of this member under way, which empties their groups.
    member = await queries.member(conn, caller.workspace_id, user_id, for_update=True)
    if member is None:
        raise NotFound("member_not_found", f"no member {user_id} in this workspace")

    return member
