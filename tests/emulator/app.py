"""The emulator's HTTP routes: OpenAI's upstream API under ``/v1`` and control under ``/_emulator``.

Every upstream request is recorded first, then delayed, then answered by the next injected
fault if there is one, then checked for its key, and only then served. The control routes
are unauthenticated: the emulator is a local test tool and binds to loopback by default.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeGuard

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.emulator import wire
from tests.emulator.state import EmulatorState, Fault, RecordedRequest

_MAX_LIMIT = 100

UpstreamHandler = Callable[[Request, RecordedRequest], Awaitable[Response]]


def create_app(state: EmulatorState) -> Starlette:
    """An ASGI app that plays an OpenAI-compatible provider as ``state`` describes it."""
    upstream = _Upstream(state)
    control = _Control(state)
    return Starlette(
        routes=[
            Route("/v1/models", upstream.route(upstream.list_models), methods=["GET"]),
            Route(
                "/v1/chat/completions",
                upstream.route(upstream.chat_completions),
                methods=["POST"],
            ),
            Route("/_emulator/requests", control.list_requests, methods=["GET"]),
            Route("/_emulator/requests", control.clear_requests, methods=["DELETE"]),
            Route("/_emulator/faults", control.add_fault, methods=["POST"]),
            Route("/_emulator/models", control.replace_models, methods=["PUT"]),
        ]
    )


class _Upstream:
    """The routes a gateway calls, answering as OpenAI documents."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def route(self, handler: UpstreamHandler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await self._serve(request, handler)

        return endpoint

    async def _serve(self, request: Request, handler: UpstreamHandler) -> Response:
        recorded = await _record(request)
        self.state.requests.append(recorded)

        if self.state.delay > 0:
            await asyncio.sleep(self.state.delay)

        fault = self.state.take_fault()
        if fault is not None:
            return _fault_response(fault)

        if not self.state.accepts(recorded.bearer):
            body = wire.invalid_key_body(recorded.bearer, echo_key=self.state.echo_key_in_errors)
            return _json(body, status=401)

        return await handler(request, recorded)

    async def list_models(self, request: Request, recorded: RecordedRequest) -> Response:
        models = self.state.models
        after = request.query_params.get("after")
        if after is not None and after not in models:
            return _bad_request(f"No model found with id {after!r}.", param="after")

        limit = _parse_limit(request.query_params.get("limit"))
        if limit is None:
            return _bad_request(f"'limit' must be an integer from 1 to {_MAX_LIMIT}.", "limit")

        start = models.index(after) + 1 if after is not None else 0
        size = min(limit, max(self.state.page_size, 1))
        page = models[start : start + size]
        entries = [
            wire.model_object(
                model_id,
                created=self.state.created + start + offset,
                owned_by=self.state.owned_by,
            )
            for offset, model_id in enumerate(page)
        ]
        return _json(wire.model_page(entries, has_more=start + size < len(models)))

    async def chat_completions(self, request: Request, recorded: RecordedRequest) -> Response:
        payload = recorded.json
        if not isinstance(payload, dict):
            return _bad_request("We could not parse the JSON body of your request.")

        model = payload.get("model")
        if not isinstance(model, str) or not model:
            return _bad_request("You must provide a model parameter.", param="model")

        if model not in self.state.models:
            return _json(
                wire.error_body(
                    f"The model `{model}` does not exist or you do not have access to it.",
                    "invalid_request_error",
                    code="model_not_found",
                ),
                status=404,
            )

        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            return _bad_request(
                "Missing required parameter: 'messages'.",
                param="messages",
                code="missing_required_parameter",
            )

        answer = wire.answer_for(model, messages)
        usage = wire.usage_for(messages, answer)
        if not payload.get("stream"):
            return _json(wire.completion(model, answer, usage))

        options = payload.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        chunks = wire.stream_chunks(
            model, answer, usage, pieces=self.state.stream_chunks, include_usage=include_usage
        )
        return StreamingResponse(
            self._server_sent_events(chunks),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    async def _server_sent_events(self, chunks: Iterator[dict[str, Any]]) -> AsyncIterator[bytes]:
        try:
            for chunk in chunks:
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
                if self.state.chunk_delay > 0:
                    await asyncio.sleep(self.state.chunk_delay)
            yield b"data: [DONE]\n\n"
        except BaseException:
            self.state.streams_cancelled += 1
            raise
        else:
            self.state.streams_finished += 1


class _Control:
    """Routes that let a test or a human steer the emulator over HTTP."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def list_requests(self, request: Request) -> Response:
        return _json({"requests": [r.as_json() for r in self.state.requests]})

    async def clear_requests(self, request: Request) -> Response:
        self.state.requests.clear()
        return Response(status_code=204)

    async def add_fault(self, request: Request) -> Response:
        payload = _json_or_none(await request.body())
        if not isinstance(payload, dict):
            return _bad_request("Send a JSON object like {'status': 500, 'times': 1}.")

        status, times = payload.get("status"), payload.get("times", 1)
        retry_after, raw_body = payload.get("retry_after"), payload.get("raw_body")
        if not _is_int(status) or not 100 <= status <= 599:
            return _bad_request("'status' must be an HTTP status code.", param="status")

        if not _is_int(times) or times < 1:
            return _bad_request("'times' must be a positive integer.", param="times")

        if retry_after is not None and not isinstance(retry_after, int | float):
            return _bad_request("'retry_after' must be a number of seconds.", "retry_after")

        if raw_body is not None and not isinstance(raw_body, str):
            return _bad_request("'raw_body' must be a string.", param="raw_body")

        self.state.fail_next(
            status,
            times=times,
            retry_after=retry_after,
            raw_body=raw_body.encode() if raw_body is not None else None,
        )
        return Response(status_code=204)

    async def replace_models(self, request: Request) -> Response:
        payload = _json_or_none(await request.body())
        models = payload.get("models") if isinstance(payload, dict) else None
        if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
            return _bad_request("Send a JSON object like {'models': ['gpt-a', 'gpt-b']}.")

        self.state.models = list(models)
        return _json({"models": self.state.models})


async def _record(request: Request) -> RecordedRequest:
    body = await request.body()
    return RecordedRequest(
        method=request.method,
        path=request.url.path,
        query=dict(request.query_params),
        headers=dict(request.headers),
        body=body,
        json=_json_or_none(body),
    )


def _fault_response(fault: Fault) -> Response:
    headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
    if fault.raw_body is not None:
        return Response(
            fault.raw_body, status_code=fault.status, headers=headers, media_type="application/json"
        )

    return _json(wire.fault_body(fault.status), status=fault.status, headers=headers)


def _parse_limit(raw: str | None) -> int | None:
    if raw is None:
        return _MAX_LIMIT

    try:
        limit = int(raw)
    except ValueError:
        return None

    return limit if 1 <= limit <= _MAX_LIMIT else None


def _json_or_none(body: bytes) -> Any:
    if not body:
        return None

    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _bad_request(message: str, param: str | None = None, code: str | None = None) -> Response:
    body = wire.error_body(message, "invalid_request_error", code=code, param=param)
    return _json(body, status=400)


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(payload), status_code=status, headers=headers, media_type="application/json"
    )
