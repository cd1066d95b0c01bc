"""OpenAI's upstream routes under ``/v1``: models (paged), chat completions, OpenRouter's key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.emulator import wire
from tests.emulator.scenarios import plan
from tests.emulator.serving import Dialect, json_response, raw_fault, retry_headers, upstream_route
from tests.emulator.state import EmulatorState, Fault, RecordedRequest

_MAX_LIMIT = 100


def _rejection(recorded: RecordedRequest, state: EmulatorState) -> Response:
    body = wire.invalid_key_body(recorded.bearer, echo_key=state.echo_key_in_errors)
    return json_response(body, status=401)


def _fault(fault: Fault) -> Response:
    raw = raw_fault(fault)
    if raw is not None:
        return raw

    return json_response(wire.fault_body(fault.status), fault.status, retry_headers(fault))


DIALECT = Dialect("openai", lambda r: r.bearer, _rejection, _fault)


def routes(state: EmulatorState) -> list[Route]:
    upstream = _OpenAI(state)
    return [
        Route("/v1/models", upstream_route(state, DIALECT, upstream.list_models), methods=["GET"]),
        Route(
            "/v1/chat/completions",
            upstream_route(state, DIALECT, upstream.chat_completions),
            methods=["POST"],
        ),
        Route("/v1/key", upstream_route(state, DIALECT, upstream.key), methods=["GET"]),
    ]


class _OpenAI:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def list_models(self, request: Request, recorded: RecordedRequest) -> Response:
        models = self.state.models
        after = request.query_params.get("after")
        if after is not None and after not in models:
            return bad_request(f"No model found with id {after!r}.", param="after")

        limit = _parse_limit(request.query_params.get("limit"))
        if limit is None:
            return bad_request(f"'limit' must be an integer from 1 to {_MAX_LIMIT}.", "limit")

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
        if self.state.openai_flavour == "groq":
            for entry in entries:
                entry["active"] = entry["id"] not in self.state.inactive_models
        return json_response(wire.model_page(entries, has_more=start + size < len(models)))

    async def key(self, request: Request, recorded: RecordedRequest) -> Response:
        # OpenRouter's description of the calling key.
        return json_response({"data": {"label": "emulated", "limit": None, "usage": 0}})

    async def chat_completions(self, request: Request, recorded: RecordedRequest) -> Response:
        payload = recorded.json
        if not isinstance(payload, dict):
            return bad_request("We could not parse the JSON body of your request.")

        model = payload.get("model")
        if not isinstance(model, str) or not model:
            return bad_request("You must provide a model parameter.", param="model")

        if model not in self.state.models:
            return json_response(
                wire.error_body(
                    f"The model `{model}` does not exist or you do not have access to it.",
                    "invalid_request_error",
                    code="model_not_found",
                ),
                status=404,
            )

        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            return bad_request(
                "Missing required parameter: 'messages'.",
                param="messages",
                code="missing_required_parameter",
            )

        answer = plan(
            self.state.scenario,
            wire.conversation(model, payload),
            cached_tokens=self.state.cached_tokens,
            reasoning_tokens=self.state.reasoning_tokens,
        )
        flavour = self.state.openai_flavour
        if not payload.get("stream"):
            if answer.fails_midway:
                return json_response(wire.fault_body(500), status=500)
            return json_response(wire.answer_completion(model, answer, flavour))

        options = payload.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        chunks = wire.answer_chunks(
            model,
            answer,
            pieces=self.state.stream_chunks,
            include_usage=include_usage,
            flavour=flavour,
        )
        return StreamingResponse(
            self._server_sent_events(chunks, ends=not answer.fails_midway),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    async def _server_sent_events(
        self, chunks: Iterator[dict[str, Any]], *, ends: bool
    ) -> AsyncIterator[bytes]:
        try:
            for chunk in chunks:
                if self.state.openai_flavour == "openrouter":
                    # OpenRouter keeps slow streams alive with SSE comments.
                    yield b": OPENROUTER PROCESSING\n\n"
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
                if self.state.chunk_delay > 0:
                    await asyncio.sleep(self.state.chunk_delay)
            if ends:
                yield b"data: [DONE]\n\n"
        except BaseException:
            self.state.streams_cancelled += 1
            raise
        else:
            self.state.streams_finished += 1


def _parse_limit(raw: str | None) -> int | None:
    if raw is None:
        return _MAX_LIMIT

    try:
        limit = int(raw)
    except ValueError:
        return None

    return limit if 1 <= limit <= _MAX_LIMIT else None


def bad_request(message: str, param: str | None = None, code: str | None = None) -> Response:
    body = wire.error_body(message, "invalid_request_error", code=code, param=param)
    return json_response(body, status=400)
