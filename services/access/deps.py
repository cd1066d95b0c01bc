"""What the access routes depend on: the runtime, and who is calling as which request."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import Depends, Request

from services.access.handlers.context import Caller
from shared.principal import AdminPrincipal, CurrentPrincipal, Principal
from shared.runtime import Runtime


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None


def _as_caller(principal: Principal) -> Caller:
    # The request's log line then says whose request it was.
    structlog.contextvars.bind_contextvars(
        workspace_id=principal.workspace_id, user_id=principal.user_id
    )
    return Caller(principal, request_id())


async def _caller(principal: CurrentPrincipal) -> Caller:
    return _as_caller(principal)


async def _admin(principal: AdminPrincipal) -> Caller:
    return _as_caller(principal)


RuntimeDep = Annotated[Runtime, Depends(_runtime)]
AnyCaller = Annotated[Caller, Depends(_caller)]
AdminCaller = Annotated[Caller, Depends(_admin)]
