"""What every upstream route does first, in each provider's own words.

Every upstream request is recorded first, then delayed, then answered by the next
injected fault if there is one, then checked for its key, and only then served. A
:class:`Dialect` says how its provider takes a key and words its refusals and failures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tests.emulator.state import EmulatorState, Fault, RecordedRequest

UpstreamHandler = Callable[[Request, RecordedRequest], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one provider checks keys and words its errors."""

    name: str
    credential: Callable[[RecordedRequest], str | None]
    rejection: Callable[[RecordedRequest, EmulatorState], Response]
    fault: Callable[[Fault], Response]


def upstream_route(
    state: EmulatorState, dialect: Dialect, handler: UpstreamHandler
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        recorded = await record(request)
        state.requests.append(recorded)

        if state.delay > 0 and not await _thought_for(state.delay, request):
            state.requests_abandoned += 1
            return Response(status_code=499)

        fault = state.take_fault()
        if fault is not None:
            return dialect.fault(fault)

        if not state.accepts(dialect.credential(recorded)):
            return dialect.rejection(recorded, state)

        return await handler(request, recorded)

    return endpoint


async def _thought_for(seconds: float, request: Request) -> bool:
    """Wait as a slow model would; False if the caller hung up first, as a provider sees it."""
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        if await request.is_disconnected():
            return False
        await asyncio.sleep(min(left, 0.02))
    return True


async def record(request: Request) -> RecordedRequest:
    body = await request.body()
    return RecordedRequest(
        method=request.method,
        path=request.url.path,
        query=dict(request.query_params),
        headers=dict(request.headers),
        body=body,
        json=json_or_none(body),
    )


def retry_headers(fault: Fault) -> dict[str, str]:
    return {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}


def raw_fault(fault: Fault, headers: dict[str, str] | None = None) -> Response | None:
    """The fault's raw body as given, if it has one: a 200 of garbage, for instance."""
    if fault.raw_body is None:
        return None

    return Response(
        fault.raw_body,
        status_code=fault.status,
        headers={**retry_headers(fault), **dict(fault.headers), **(headers or {})},
        media_type="application/json",
    )


def json_or_none(body: bytes) -> Any:
    if not body:
        return None

    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(payload), status_code=status, headers=headers, media_type="application/json"
    )
