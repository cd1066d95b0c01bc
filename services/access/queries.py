"""Reads of the access schema. Each one is scoped by the caller's workspace, so an id
from another workspace finds nothing, exactly as an id that never existed. Removed
members are passed over the same way: their rows stay, but no read finds them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.access.domain import (
    DirectoryEntry,
    Group,
    Member,
    Model,
    Rule,
    Token,
    directory_page,
)
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


def _model(row: Row[Any]) -> Model:
    return Model(
        id=row.id,
        workspace_id=row.workspace_id,
        name=row.name,
        retired=row.retired,
        enabled=row.enabled,
    )


def _members_of_workspace(workspace_id: str) -> ColumnElement[bool]:
    return (users.c.workspace_id == workspace_id) & users.c.removed_at.is_(None)


# members


async def member(
    conn: AsyncConnection, workspace_id: str, user_id: str, *, for_update: bool = False
) -> Member | None:
    query = select(users).where(_members_of_workspace(workspace_id), users.c.id == user_id)
    row = (await conn.execute(_maybe_locked(query, for_update))).first()
    return None if row is None else _member(row)


async def members(conn: AsyncConnection, workspace_id: str) -> list[Member]:
    query = select(users).where(_members_of_workspace(workspace_id)).order_by(users.c.created_at)
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
        .where(_members_of_workspace(workspace_id), group_members.c.group_id == group_id)
        .order_by(group_members.c.added_at)
    )
    return [_member(row) for row in await conn.execute(query)]


async def groups_of(conn: AsyncConnection, workspace_id: str, user_id: str) -> frozenset[str]:
    """The ids of the groups one member belongs to."""
    query = (
        select(group_members.c.group_id)
        .join(groups, groups.c.id == group_members.c.group_id)
        .where(groups.c.workspace_id == workspace_id, group_members.c.user_id == user_id)
    )
    return frozenset(row.group_id for row in await conn.execute(query))


async def memberships(conn: AsyncConnection, workspace_id: str) -> dict[str, frozenset[str]]:
    """For every member of the workspace in some group, the ids of their groups."""
    query = (
        select(group_members.c.user_id, group_members.c.group_id)
        .join(groups, groups.c.id == group_members.c.group_id)
        .where(groups.c.workspace_id == workspace_id)
    )
    found: dict[str, set[str]] = {}
    for row in await conn.execute(query):
        found.setdefault(row.user_id, set()).add(row.group_id)
    return {user_id: frozenset(ids) for user_id, ids in found.items()}


# the access dialog's directory


async def directory(
    conn: AsyncConnection, workspace_id: str, query: str, limit: int
) -> list[DirectoryEntry]:
    """People (by name or email) and groups (by name) whose text contains ``query``,
    prefix matches first, at most ``limit`` of them.

    Matching ignores case, and ``autoescape`` makes any ``%`` or ``_`` in the query a
    literal character rather than a LIKE wildcard. Each kind is cut at ``limit`` with
    its best matches first, so the merged page loses nothing it should show.
    """
    people = select(
        users.c.id,
        users.c.display_name,
        users.c.email,
        users.c.active,
        _rank(query, users.c.display_name, users.c.email).label("rank"),
    ).where(
        _members_of_workspace(workspace_id),
        or_(
            users.c.display_name.icontains(query, autoescape=True),
            users.c.email.icontains(query, autoescape=True),
        ),
    )
    teams = select(groups.c.id, groups.c.name, _rank(query, groups.c.name).label("rank")).where(
        groups.c.workspace_id == workspace_id, groups.c.name.icontains(query, autoescape=True)
    )

    found = [
        DirectoryEntry("user", row.id, row.display_name, row.email, row.active, row.rank)
        for row in await conn.execute(
            people.order_by("rank", func.lower(users.c.display_name), users.c.id).limit(limit)
        )
    ]
    found += [
        DirectoryEntry("group", row.id, row.name, None, True, row.rank)
        for row in await conn.execute(
            teams.order_by("rank", func.lower(groups.c.name), groups.c.id).limit(limit)
        )
    ]
    return directory_page(found, limit)


def _rank(query: str, *columns: Any) -> ColumnElement[int]:
    starts = or_(*(column.istartswith(query, autoescape=True) for column in columns))
    return case((starts, 0), else_=1)


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
    return None if row is None else _model(row)


async def models_by_id(
    conn: AsyncConnection, workspace_id: str, model_ids: set[str]
) -> dict[str, Model]:
    if not model_ids:
        return {}

    query = select(models).where(models.c.workspace_id == workspace_id, models.c.id.in_(model_ids))
    return {row.id: _model(row) for row in await conn.execute(query)}


async def rules_of(conn: AsyncConnection, workspace_id: str, model_id: str) -> list[Rule]:
    query = (
        select(rules)
        .where(rules.c.workspace_id == workspace_id, rules.c.model_id == model_id)
        .order_by(rules.c.granted_at)
    )
    return [_rule(row) for row in await conn.execute(query)]


async def rules_reaching(
    conn: AsyncConnection, workspace_id: str, member_id: str, group_ids: frozenset[str]
) -> list[Rule]:
    """Every rule that could give a model to this member: to the workspace, to one of
    their groups, or to them."""
    query = (
        select(rules)
        .where(
            rules.c.workspace_id == workspace_id,
            or_(
                rules.c.principal_kind == "workspace",
                (rules.c.principal_kind == "group") & rules.c.principal_id.in_(group_ids),
                (rules.c.principal_kind == "user") & (rules.c.principal_id == member_id),
            ),
        )
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
