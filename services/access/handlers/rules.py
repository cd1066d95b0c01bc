"""Access rules: a model granted to the whole workspace, a group, or one member."""

from __future__ import annotations

import structlog
from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.access import queries
from services.access.domain import Conflict, Invalid, NotFound, Rule, check_grantable
from services.access.handlers.context import Caller, violates
from services.access.tables import rules
from shared.events.envelope import new_id, utcnow
from shared.events.schemas import AccessGranted, AccessRevoked, PrincipalKind
from shared.runtime import Runtime

log = structlog.get_logger(__name__)


async def grant_access(
    runtime: Runtime,
    caller: Caller,
    model_id: str,
    *,
    principal_kind: PrincipalKind,
    principal_id: str | None,
) -> Rule:
    try:
        async with runtime.engine.begin() as conn:
            model = await queries.model(conn, caller.workspace_id, model_id)
            if model is None:
                raise NotFound("model_not_found", f"no model {model_id} in this workspace")

            check_grantable(model)
            grantee = await _grantee(conn, caller, principal_kind, principal_id)
            rule = Rule(new_id(), model_id, principal_kind, grantee, "can_view")
            await conn.execute(
                insert(rules).values(
                    id=rule.id,
                    workspace_id=caller.workspace_id,
                    model_id=model_id,
                    principal_kind=principal_kind,
                    principal_id=grantee,
                    permission=rule.permission,
                    granted_at=utcnow(),
                )
            )
            event = AccessGranted(
                rule_id=rule.id,
                model_id=model_id,
                principal_kind=principal_kind,
                principal_id=grantee,
            )
            await runtime.store.append(
                conn, f"rule-{rule.id}", [event], actor=caller.actor, expected_version=0
            )
    except IntegrityError as error:
        if violates(error, "rules_grant_key"):
            raise Conflict(
                "rule_exists", f"model {model_id} is already granted to that {principal_kind}"
            ) from error
        raise

    runtime.events_committed()
    log.info("access_granted", rule_id=rule.id, model_id=model_id, principal_kind=principal_kind)
    return rule


async def revoke_access(runtime: Runtime, caller: Caller, model_id: str, rule_id: str) -> None:
    async with runtime.engine.begin() as conn:
        rule = await queries.rule(conn, caller.workspace_id, model_id, rule_id, for_update=True)
        if rule is None:
            raise NotFound("rule_not_found", f"no rule {rule_id} on model {model_id}")

        await conn.execute(delete(rules).where(rules.c.id == rule_id))
        event = AccessRevoked(
            rule_id=rule_id,
            model_id=model_id,
            principal_kind=rule.principal_kind,
            principal_id=rule.principal_id,
        )
        await runtime.store.append(conn, f"rule-{rule_id}", [event], actor=caller.actor)

    runtime.events_committed()
    log.info("access_revoked", rule_id=rule_id, model_id=model_id)


async def _grantee(
    conn: AsyncConnection, caller: Caller, kind: PrincipalKind, principal_id: str | None
) -> str:
    """The id a rule names, checked to belong to the caller's workspace."""
    if kind == "workspace":
        if principal_id not in (None, caller.workspace_id):
            raise NotFound("workspace_not_found", f"no workspace {principal_id} is visible here")
        return caller.workspace_id

    if principal_id is None:
        raise Invalid("invalid_request", f"principal_id is required for a {kind} rule")

    if kind == "group" and await queries.group(conn, caller.workspace_id, principal_id) is None:
        raise NotFound("group_not_found", f"no group {principal_id} in this workspace")

    # The lock waits for a removal of this member under way, which revokes their rules.
    if (
        kind == "user"
        and await queries.member(conn, caller.workspace_id, principal_id, for_update=True) is None
    ):
        raise NotFound("member_not_found", f"no member {principal_id} in this workspace")

    return principal_id
