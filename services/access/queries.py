"""Reads of the access schema. Each one is scoped by the caller's workspace, so an id
from another workspace finds nothing, exactly as an id that never existed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.access.domain import Group, Member, Model, Rule, Token
from services.access.tables import group_members, groups, models, rules, tokens, users
from shared.principal import Principal


def _maybe_locked(query: Select[Any], for_update: bool) -> Select[Any]:
    return query.with_for_update() if for_update else query


def _member(row: Row[Any]) -> Member:
    return Member(
        id=row.id,
        workspace_id=row.workspace_id,
        email=row.email,
        display_name=row.display_name,
        role=row.role,
        active=row.active,
    )


def _token(row: Row[Any]) -> Token:
    return Token(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def _rule(row: Row[Any]) -> Rule:
    return Rule(
        id=row.id,
        model_id=row.model_id,
        principal_kind=row.principal_kind,
        principal_id=row.principal_id,
        permission=row.permission,
    )


# members


async def member(
    conn: AsyncConnection, workspace_id: str, user_id: str, *, for_update: bool = False
) -> Member | None:
    query = select(users).where(users.c.workspace_id == workspace_id, users.c.id == user_id)
    row = (await conn.execute(_maybe_locked(query, for_update))).first()
    return None if row is None else _member(row)


async def member_by_email(conn: AsyncConnection, workspace_id: str, key: str) -> Member | None:
    query = select(users).where(users.c.workspace_id == workspace_id, users.c.email_key == key)
    row = (await conn.execute(query)).first()
    return None if row is None else _member(row)


async def members(conn: AsyncConnection, workspace_id: str) -> list[Member]:
    query = select(users).where(users.c.workspace_id == workspace_id).order_by(users.c.created_at)
    return [_member(row) for row in await conn.execute(query)]


async def active_owner_count(conn: AsyncConnection, workspace_id: str) -> int:
    query = select(func.count()).where(
        users.c.workspace_id == workspace_id, users.c.role == "owner", users.c.active.is_(True)
    )
    return int((await conn.execute(query)).scalar_one())


# groups


async def group(conn: AsyncConnection, workspace_id: str, group_id: str) -> Group | None:
    query = select(groups).where(groups.c.workspace_id == workspace_id, groups.c.id == group_id)
    row = (await conn.execute(query)).first()
    return None if row is None else Group(id=row.id, workspace_id=row.workspace_id, name=row.name)


async def all_groups(conn: AsyncConnection, workspace_id: str) -> list[Group]:
    query = select(groups).where(groups.c.workspace_id == workspace_id).order_by(groups.c.name)
    return [
        Group(id=row.id, workspace_id=row.workspace_id, name=row.name)
        for row in await conn.execute(query)
    ]


async def members_of(conn: AsyncConnection, workspace_id: str, group_id: str) -> list[Member]:
    query = (
        select(users)
        .join(group_members, group_members.c.user_id == users.c.id)
        .where(users.c.workspace_id == workspace_id, group_members.c.group_id == group_id)
        .order_by(group_members.c.added_at)
    )
    return [_member(row) for row in await conn.execute(query)]


async def is_in_group(conn: AsyncConnection, group_id: str, user_id: str) -> bool:
    query = select(group_members.c.user_id).where(
        group_members.c.group_id == group_id, group_members.c.user_id == user_id
    )
    return (await conn.execute(query)).first() is not None


# tokens


async def token(
    conn: AsyncConnection, workspace_id: str, token_id: str, *, for_update: bool = False
) -> Token | None:
    query = select(tokens).where(tokens.c.workspace_id == workspace_id, tokens.c.id == token_id)
    row = (await conn.execute(_maybe_locked(query, for_update))).first()
    return None if row is None else _token(row)


async def tokens_of(conn: AsyncConnection, workspace_id: str, user_id: str) -> list[Token]:
    query = (
        select(tokens)
        .where(tokens.c.workspace_id == workspace_id, tokens.c.user_id == user_id)
        .order_by(tokens.c.created_at)
    )
    return [_token(row) for row in await conn.execute(query)]


async def principal_for(conn: AsyncConnection, digest: str, now: datetime) -> Principal | None:
    """Whose token this is, if it is live: not revoked, not expired, its member active."""
    query = (
        select(tokens.c.id, tokens.c.workspace_id, tokens.c.user_id, users.c.role)
        .join(users, users.c.id == tokens.c.user_id)
        .where(
            tokens.c.token_hash == digest,
            tokens.c.revoked_at.is_(None),
            or_(tokens.c.expires_at.is_(None), tokens.c.expires_at > now),
            users.c.active.is_(True),
        )
    )
    row = (await conn.execute(query)).first()
    if row is None:
        return None

    return Principal(
        workspace_id=row.workspace_id, user_id=row.user_id, role=row.role, token_id=row.id
    )


# models and rules


async def model(conn: AsyncConnection, workspace_id: str, model_id: str) -> Model | None:
    query = select(models).where(models.c.workspace_id == workspace_id, models.c.id == model_id)
    row = (await conn.execute(query)).first()
    if row is None:
        return None

    return Model(id=row.id, workspace_id=row.workspace_id, name=row.name, retired=row.retired)


async def rules_of(conn: AsyncConnection, workspace_id: str, model_id: str) -> list[Rule]:
    query = (
        select(rules)
        .where(rules.c.workspace_id == workspace_id, rules.c.model_id == model_id)
        .order_by(rules.c.granted_at)
    )
    return [_rule(row) for row in await conn.execute(query)]


async def rule(
    conn: AsyncConnection,
    workspace_id: str,
    model_id: str,
    rule_id: str,
    *,
    for_update: bool = False,
) -> Rule | None:
    query = select(rules).where(
        rules.c.workspace_id == workspace_id, rules.c.model_id == model_id, rules.c.id == rule_id
    )
    row = (await conn.execute(_maybe_locked(query, for_update))).first()
    return None if row is None else _rule(row)


async def rule_exists(
    conn: AsyncConnection, workspace_id: str, model_id: str, kind: str, principal_id: str
) -> bool:
    query = select(rules.c.id).where(
        rules.c.workspace_id == workspace_id,
        rules.c.model_id == model_id,
        rules.c.principal_kind == kind,
        rules.c.principal_id == principal_id,
    )
    return (await conn.execute(query)).first() is not None
