"""Gateway tokens: issued to a member, shown once, stored as a hash, revoked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.access import queries
from services.access.domain import (
    Conflict,
    Member,
    NotFound,
    Token,
    check_expiry,
    check_may_act_on_tokens_of,
    check_may_revoke,
    new_token,
)
from services.access.handlers.context import Caller
from services.access.tables import tokens
from shared.events.envelope import new_id, utcnow
from shared.events.schemas import TokenIssued, TokenRevoked
from shared.events.store import Actor
from shared.runtime import Runtime
from shared.secrets import GatewayToken

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token as listed, and its secret: the one time anyone sees it."""

    token: Token
    secret: GatewayToken


async def issue_token(
    runtime: Runtime, caller: Caller, user_id: str, *, name: str, expires_at: datetime | None
) -> IssuedToken:
    check_expiry(expires_at, utcnow())

    async with runtime.engine.begin() as conn:
        # The lock waits for a deactivation or removal of this member under way.
        member = await queries.member(conn, caller.workspace_id, user_id, for_update=True)
        if member is None:
            raise NotFound("member_not_found", f"no member {user_id} in this workspace")

        if not member.active:
            raise Conflict("member_inactive", f"member {user_id} is deactivated")

        check_may_act_on_tokens_of(
            caller.principal.user_id, caller.principal.role, member.id, member.role
        )
        issued = await insert_token(runtime, conn, member, name, expires_at, caller.actor)

    runtime.events_committed()
    log.info("token_issued", token_id=issued.token.id, member_id=user_id)
    return issued


async def revoke_token(runtime: Runtime, caller: Caller, token_id: str) -> None:
    async with runtime.engine.begin() as conn:
        token = await queries.token(conn, caller.workspace_id, token_id, for_update=True)
        if token is None:
            raise NotFound("token_not_found", "no such token in this workspace")

        check_may_revoke(caller.principal.user_id, caller.principal.role, token)
        holder = await queries.member(conn, caller.workspace_id, token.user_id)
        if holder is not None:
            check_may_act_on_tokens_of(
                caller.principal.user_id, caller.principal.role, holder.id, holder.role
            )
        if token.revoked_at is not None:
            return

        await conn.execute(
            update(tokens).where(tokens.c.id == token_id).values(revoked_at=utcnow())
        )
        await runtime.store.append(
            conn,
            f"token-{token_id}",
            [TokenRevoked(token_id=token_id, user_id=token.user_id)],
            actor=caller.actor,
        )

    runtime.events_committed()
    log.info("token_revoked", token_id=token_id)


async def insert_token(
    runtime: Runtime,
    conn: AsyncConnection,
    member: Member,
    name: str,
    expires_at: datetime | None,
    actor: Actor,
) -> IssuedToken:
    made = new_token()
    token = Token(new_id(), member.id, name, made.prefix, utcnow(), expires_at, None)
    await conn.execute(
        insert(tokens).values(
            id=token.id,
            workspace_id=member.workspace_id,
            user_id=member.id,
            name=name,
            token_hash=made.hash,
            prefix=made.prefix,
            created_at=token.created_at,
            expires_at=expires_at,
        )
    )
    issued = TokenIssued(
        token_id=token.id,
        user_id=member.id,
        token_hash=made.hash,
        token_prefix=made.prefix,
        token_name=name,
        expires_at=expires_at,
    )
    await runtime.store.append(conn, f"token-{token.id}", [issued], actor=actor, expected_version=0)
    return IssuedToken(token, made.secret)
