"""OpenAI's Responses (``POST /v1/responses``) and Embeddings (``POST /v1/embeddings``) routes.

Responses answers under the same scenarios as chat (see :mod:`scenarios`): a ``message``
item with the text, ``function_call`` items for tool calls, usage in the Responses fields;
streamed as OpenAI's named events with a rising ``sequence_number``. A mid-stream failure
sends half the text, then an ``error`` event and ``response.failed``.

Embeddings give each input a small deterministic vector (from the text's hash), as floats
or, when ``encoding_format`` is ``base64`` (what the openai SDK asks for), as little-endian
float32 bytes in base64. Usage counts words, like every other route here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.emulator import wire
from tests.emulator.openai_routes import DIALECT, bad_request
from tests.emulator.scenarios import Answer, Conversation, Tool, halves, plan, split_evenly
from tests.emulator.serving import json_response, upstream_route
from tests.emulator.state import EmulatorState, RecordedRequest

DIMENSIONS = 8


def routes(state: EmulatorState) -> list[Route]:
    upstream = _Extras(state)
    return [
        Route(
            "/v1/responses", upstream_route(state, DIALECT, upstream.responses), methods=["POST"]
        ),
        Route(
            "/v1/embeddings", upstream_route(state, DIALECT, upstream.embeddings), methods=["POST"]
        ),
    ]


class _Extras:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def responses(self, request: Request, recorded: RecordedRequest) -> Response:
        payload = recorded.json
        if not isinstance(payload, dict):
            return bad_request("We could not parse the JSON body of your request.")

        model = payload.get("model")
        if model not in self.state.models:
            return bad_request(f"The model `{model}` does not exist.", param="model")

        answer = plan(
            self.state.scenario,
            read_conversation(str(model), payload),
            cached_tokens=self.state.cached_tokens,
            reasoning_tokens=self.state.reasoning_tokens,
        )
        if not payload.get("stream"):
            if answer.fails_midway:
                return json_response(wire.fault_body(500), status=500)
            return json_response(response_body(str(model), answer, "completed"))

        return StreamingResponse(
            self._events(str(model), answer),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    async def embeddings(self, request: Request, recorded: RecordedRequest) -> Response:
        payload = recorded.json
        if not isinstance(payload, dict):
            return bad_request("We could not parse the JSON body of your request.")

        model, given = payload.get("model"), payload.get("input")
        if model not in self.state.models:
            return bad_request(f"The model `{model}` does not exist.", param="model")

        inputs = [given] if isinstance(given, str) else given
        if (
            not isinstance(inputs, list)
            or not inputs
            or not all(isinstance(i, str) for i in inputs)
        ):
            return bad_request("'input' must be a string or an array of strings.", param="input")

        as_base64 = payload.get("encoding_format") == "base64"
        tokens = sum(len(text.split()) for text in inputs)
        return json_response(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": _vector(text, as_base64)}
                    for i, text in enumerate(inputs)
                ],
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _events(self, model: str, answer: Answer) -> AsyncIterator[bytes]:
        try:
            for number, (name, data) in enumerate(stream_events(model, answer, self.state)):
                body = {"type": name, **data, "sequence_number": number}
                yield b"event: " + name.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"
                if self.state.chunk_delay > 0:
                    await asyncio.sleep(self.state.chunk_delay)
        except BaseException:
            self.state.streams_cancelled += 1
            raise
        else:
            self.state.streams_finished += 1


def read_conversation(model: str, payload: dict[str, Any]) -> Conversation:
    found = Conversation(model=model)
    if isinstance(payload.get("instructions"), str):
        found.texts.append(payload["instructions"])
    given = payload.get("input")
    items = [{"role": "user", "content": given}] if isinstance(given, str) else given or []
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call_output":
            found.tool_results.append(str(item.get("output")))
            continue
        text = _text(item.get("content"))
        found.texts.append(text)
        if item.get("role") == "user":
            found.last_user_text, found.tool_results = text, []
        for part in item.get("content") if isinstance(item.get("content"), list) else []:
            if isinstance(part, dict) and part.get("type") == "input_image":
                found.images.append(str(part.get("image_url")))
    found.tools = [
        Tool(str(t.get("name")), t.get("parameters") or {})
        for t in payload.get("tools") or []
        if isinstance(t, dict) and t.get("type") == "function"
    ]
    return found


def _text(content: object) -> str:
    if isinstance(content, str):
        return content

    parts = content if isinstance(content, list) else []
    return " ".join(str(p.get("text", "")) for p in parts if isinstance(p, dict) and "text" in p)


def _usage(answer: Answer) -> dict[str, Any]:
    return {
        "input_tokens": answer.input_tokens,
        "input_tokens_details": {"cached_tokens": answer.cached_tokens},
        "output_tokens": answer.output_tokens,
        "output_tokens_details": {"reasoning_tokens": answer.reasoning_tokens},
        "total_tokens": answer.input_tokens + answer.output_tokens,
    }


def _message(text: str, status: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": "msg_emulated",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _calls(answer: Answer) -> list[dict[str, Any]]:
    return [
        {
            "type": "function_call",
            "id": f"fc_emulated_{index}",
            "call_id": call.id,
            "name": call.name,
            "arguments": orjson.dumps(call.arguments).decode(),
            "status": "completed",
        }
        for index, call in enumerate(answer.tool_calls)
    ]


def response_body(
    model: str, answer: Answer | None, status: str, output: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    if output is None and answer is not None:
        output = ([_message(answer.text, "completed")] if answer.text else []) + _calls(answer)
    return {
        "id": "resp_emulated",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": output or [],
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": _usage(answer) if answer is not None and status != "in_progress" else None,
    }


def stream_events(
    model: str, answer: Answer, state: EmulatorState
) -> list[tuple[str, dict[str, Any]]]:
    """The events of a streamed Response, in OpenAI's order (sequence numbers added later)."""
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": response_body(model, None, "in_progress")}),
        ("response.in_progress", {"response": response_body(model, None, "in_progress")}),
    ]
    output_index = 0
    if answer.text:
        where = {"item_id": "msg_emulated", "output_index": 0, "content_index": 0}
        events.append(
            (
                "response.output_item.added",
                {"output_index": 0, "item": {**_message("", "in_progress"), "content": []}},
            )
        )
        part = {"type": "output_text", "text": "", "annotations": []}
        events.append(("response.content_part.added", {**where, "part": part}))
        pieces = split_evenly(answer.text, state.stream_chunks)
        if answer.fails_midway:
            for piece in pieces[: max(len(pieces) // 2, 1)]:
                events.append(("response.output_text.delta", {**where, "delta": piece}))
            error = {"code": "server_error", "message": "The server had an error.", "param": None}
            events.append(("error", error))
            failed = response_body(model, None, "failed")
            failed["error"] = {"code": "server_error", "message": "The server had an error."}
            events.append(("response.failed", {"response": failed}))
            return events
        for piece in pieces:
            events.append(("response.output_text.delta", {**where, "delta": piece}))
        events.append(("response.output_text.done", {**where, "text": answer.text}))
        events.append(
            ("response.content_part.done", {**where, "part": {**part, "text": answer.text}})
        )
        events.append(
            (
                "response.output_item.done",
                {"output_index": 0, "item": _message(answer.text, "completed")},
            )
        )
        output_index = 1
    for offset, call in enumerate(_calls(answer)):
        index = output_index + offset
        events.append(
            (
                "response.output_item.added",
                {"output_index": index, "item": {**call, "arguments": "", "status": "in_progress"}},
            )
        )
        for fragment in halves(call["arguments"]):
            events.append(
                (
                    "response.function_call_arguments.delta",
                    {"item_id": call["id"], "output_index": index, "delta": fragment},
                )
            )
        events.append(
            (
                "response.function_call_arguments.done",
                {"item_id": call["id"], "output_index": index, "arguments": call["arguments"]},
            )
        )
        events.append(("response.output_item.done", {"output_index": index, "item": call}))
    status = "incomplete" if answer.finish == "length" else "completed"
    events.append((f"response.{status}", {"response": response_body(model, answer, status)}))
    return events


def _vector(text: str, as_base64: bool) -> list[float] | str:
    digest = hashlib.sha256(text.encode()).digest()
    values = [(byte - 128) / 128 for byte in digest[:DIMENSIONS]]
    if not as_base64:
        return values

    return base64.b64encode(struct.pack(f"<{DIMENSIONS}f", *values)).decode()
