"""Anthropic's upstream routes under ``/anthropic/v1``: models, messages (JSON and SSE), count_tokens.

Keys travel in ``x-api-key`` or, as the 2.x SDKs send them, ``Authorization: Bearer``
(``x-api-key`` wins when both are sent). Every request must name an ``anthropic-version``;
under ``2026-10-21`` the sampling parameters ``temperature``, ``top_p`` and ``top_k`` are
refused, as that version documents. Models page with ``limit``, ``after_id``,
``has_more``, ``first_id``, ``last_id``. Errors are
``{"type": "error", "error": {"type", "message"}, "request_id"}``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.emulator.scenarios import Answer, Conversation, Tool, halves, plan, split_evenly
from tests.emulator.serving import Dialect, json_response, raw_fault, retry_headers, upstream_route
from tests.emulator.state import EmulatorState, Fault, RecordedRequest

PREFIX = "/anthropic/v1"
_ERROR_TYPES = {
    400: ("invalid_request_error", "Bad request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error."),
    529: ("overloaded_error", "Overloaded"),
}


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    error_type, default = _ERROR_TYPES.get(status, ("api_error", f"Emulated failure {status}."))
    return {
        "type": "error",
        "error": {"type": error_type, "message": message or default},
        "request_id": f"req_{uuid.uuid4().hex[:24]}",
    }


_SAMPLING_REMOVED_IN = "2026-10-21"


def _credential(recorded: RecordedRequest) -> str | None:
    return recorded.headers.get("x-api-key") or recorded.bearer


def _rejection(recorded: RecordedRequest, state: EmulatorState) -> Response:
    key = _credential(recorded)
    message = (
        "invalid x-api-key"
        if key is None or not state.echo_key_in_errors
        else (f"invalid x-api-key: {key}")
    )
    return json_response(error_body(401, message), status=401)


def _fault(fault: Fault) -> Response:
    return raw_fault(fault) or json_response(
        error_body(fault.status), fault.status, retry_headers(fault)
    )


DIALECT = Dialect("anthropic", _credential, _rejection, _fault)


def routes(state: EmulatorState) -> list[Route]:
    upstream = _Anthropic(state)
    return [
        Route(f"{PREFIX}/models", upstream_route(state, DIALECT, upstream.models), methods=["GET"]),
        Route(
            f"{PREFIX}/messages",
            upstream_route(state, DIALECT, upstream.messages),
            methods=["POST"],
        ),
        Route(
            f"{PREFIX}/messages/count_tokens",
            upstream_route(state, DIALECT, upstream.count_tokens),
            methods=["POST"],
        ),
    ]


class _Anthropic:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def models(self, request: Request, recorded: RecordedRequest) -> Response:
        refusal = _version_refusal(recorded)
        if refusal is not None:
            return refusal

        models = self.state.models
        after = request.query_params.get("after_id")
        if after is not None and after not in models:
            return json_response(error_body(400, f"Unknown after_id {after!r}."), status=400)

        try:
            limit = int(request.query_params.get("limit", "20"))
        except ValueError:
            return json_response(error_body(400, "limit must be an integer"), status=400)
        start = models.index(after) + 1 if after is not None else 0
        size = min(max(limit, 1), max(self.state.page_size, 1))
        page = models[start : start + size]
        created = datetime.fromtimestamp(self.state.created, UTC).isoformat().replace("+00:00", "Z")
        data = [
            {
                "type": "model",
                "id": m,
                "display_name": m.title(),
                "created_at": created,
                "lifecycle": "active",
                "max_input_tokens": 200_000,
                "max_tokens": 64_000,
            }
            for m in page
        ]
        return json_response(
            {
                "data": data,
                "has_more": start + size < len(models),
                "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None,
            }
        )

    async def count_tokens(self, request: Request, recorded: RecordedRequest) -> Response:
        refusal = _version_refusal(recorded)
        payload = recorded.json
        if refusal is not None or not isinstance(payload, dict):
            return refusal or json_response(error_body(400, "Invalid JSON body."), status=400)

        conversation = read_conversation(str(payload.get("model")), payload)
        return json_response(
            {"input_tokens": sum(len(text.split()) for text in conversation.texts)}
        )

    async def messages(self, request: Request, recorded: RecordedRequest) -> Response:
        refusal = _version_refusal(recorded)
        if refusal is not None:
            return refusal

        payload = recorded.json
        if not isinstance(payload, dict):
            return json_response(error_body(400, "Invalid JSON body."), status=400)

        model = payload.get("model")
        if model not in self.state.models:
            return json_response(error_body(404, f"model: {model}"), status=404)

        if not isinstance(payload.get("max_tokens"), int):
            return json_response(error_body(400, "max_tokens: Field required"), status=400)

        if recorded.headers.get("anthropic-version", "") >= _SAMPLING_REMOVED_IN:
            for name in ("temperature", "top_p", "top_k"):
                if name in payload:
                    refusal = f"{name}: Extra inputs are not permitted"
                    return json_response(error_body(400, refusal), status=400)

        answer = plan(
            self.state.scenario,
            read_conversation(str(model), payload),
            cached_tokens=self.state.cached_tokens,
            reasoning_tokens=self.state.reasoning_tokens,
        )
        if not payload.get("stream"):
            if answer.fails_midway:
                return json_response(error_body(500), status=500)
            return json_response(message(str(model), answer))

        return StreamingResponse(
            self._events(str(model), answer),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    async def _events(self, model: str, answer: Answer) -> AsyncIterator[bytes]:
        try:
            for name, data in stream_events(model, answer, self.state.stream_chunks):
                yield b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
                if self.state.chunk_delay > 0:
                    await asyncio.sleep(self.state.chunk_delay)
        except BaseException:
            self.state.streams_cancelled += 1
            raise
        else:
            self.state.streams_finished += 1


def _version_refusal(recorded: RecordedRequest) -> Response | None:
    if recorded.headers.get("anthropic-version"):
        return None

    return json_response(error_body(400, "anthropic-version: header is required"), status=400)


def read_conversation(model: str, payload: dict[str, Any]) -> Conversation:
    found = Conversation(model=model)
    system = payload.get("system")
    if system:
        found.texts.append(_text(system))
    messages = [m for m in payload.get("messages") or [] if isinstance(m, dict)]
    for message in messages:
        found.texts.append(_text(message.get("content")))
        for block in _blocks(message.get("content")):
            if block.get("type") == "image":
                source = block.get("source") or {}
                found.images.append(
                    f"{source.get('media_type')} (base64)"
                    if source.get("type") == "base64"
                    else str(source.get("url"))
                )
    users = [m for m in messages if m.get("role") == "user"]
    if users:
        found.last_user_text = _text(users[-1].get("content"))
        found.tool_results = [
            _text(b.get("content"))
            for b in _blocks(users[-1].get("content"))
            if b.get("type") == "tool_result"
        ]
    found.tools = [
        Tool(str(t.get("name")), t.get("input_schema") or {})
        for t in payload.get("tools") or []
        if isinstance(t, dict)
    ]
    return found


def _blocks(content: object) -> list[dict[str, Any]]:
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _text(content: object) -> str:
    if isinstance(content, str):
        return content

    return " ".join(str(b.get("text", "")) for b in _blocks(content) if b.get("type") == "text")


_STOP = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}


def _usage(answer: Answer) -> dict[str, Any]:
    return {
        "input_tokens": answer.input_tokens - answer.cached_tokens,
        "output_tokens": answer.output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": answer.cached_tokens,
        "output_tokens_details": {"thinking_tokens": answer.reasoning_tokens},
    }


def _tool_id(index: int) -> str:
    return f"toolu_emulated_{index}"


def message(model: str, answer: Answer) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if answer.text:
        content.append({"type": "text", "text": answer.text})
    for index, call in enumerate(answer.tool_calls):
        content.append(
            {"type": "tool_use", "id": _tool_id(index), "name": call.name, "input": call.arguments}
        )
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _STOP[answer.finish],
        "stop_sequence": None,
        "usage": _usage(answer),
    }


def stream_events(model: str, answer: Answer, pieces: int) -> list[tuple[str, dict[str, Any]]]:
    """The events of a streamed message, in Anthropic's order."""
    start = message(model, answer)
    start.update(content=[], stop_reason=None, usage={**_usage(answer), "output_tokens": 1})
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start}),
        ("ping", {"type": "ping"}),
    ]
    block = 0
    if answer.text:
        events.append(_block_start(block, {"type": "text", "text": ""}))
        texts = split_evenly(answer.text, pieces)
        if answer.fails_midway:
            texts = texts[: max(len(texts) // 2, 1)]
        for piece in texts:
            events.append(_block_delta(block, {"type": "text_delta", "text": piece}))
        if answer.fails_midway:
            events.append(("error", error_body(529)))
            return events
        events.append(("content_block_stop", {"type": "content_block_stop", "index": block}))
        block += 1
    for index, call in enumerate(answer.tool_calls):
        opening = {"type": "tool_use", "id": _tool_id(index), "name": call.name, "input": {}}
        events.append(_block_start(block, opening))
        for fragment in halves(orjson.dumps(call.arguments).decode()):
            events.append(
                _block_delta(block, {"type": "input_json_delta", "partial_json": fragment})
            )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": block}))
        block += 1
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": _STOP[answer.finish], "stop_sequence": None},
                "usage": {"output_tokens": answer.output_tokens},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _block_start(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "content_block_start", {
        "type": "content_block_start",
        "index": index,
        "content_block": block,
    }


def _block_delta(index: int, delta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
