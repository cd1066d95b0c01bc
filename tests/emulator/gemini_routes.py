"""Gemini API routes under ``/google/v1beta``: models (paged by token), generateContent, SSE stream.

Keys travel in ``x-goog-api-key`` (or ``?key=``). A bad key is a 400 ``INVALID_ARGUMENT``
with the reason ``API_KEY_INVALID``, as Google answers. Function calls carry no id, as
Gemini sends them unless asked. Streams are ``alt=sse`` events of partial responses with
no end marker; the last one holds the finish reason and the usage.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.emulator.scenarios import Answer, Conversation, Tool, plan, split_evenly
from tests.emulator.serving import Dialect, json_response, raw_fault, retry_headers, upstream_route
from tests.emulator.state import EmulatorState, Fault, RecordedRequest

PREFIX = "/google/v1beta"
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_FINISH = {"stop": "STOP", "tool_calls": "STOP", "length": "MAX_TOKENS"}


def error_body(
    status: int, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": _STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return {"error": error}


def _rejection(recorded: RecordedRequest, state: EmulatorState) -> Response:
    message = "API key not valid. Please pass a valid API key."
    if state.echo_key_in_errors and recorded.api_key:
        message = f"API key not valid: {recorded.api_key}. Please pass a valid API key."
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
        }
    ]
    return json_response(error_body(400, message, details), status=400)


def _fault(fault: Fault) -> Response:
    raw = raw_fault(fault)
    if raw is not None:
        return raw

    details = None
    if fault.status == 429 and fault.retry_after is not None:
        details = [
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": f"{fault.retry_after:g}s",
            }
        ]
    body = error_body(fault.status, f"Emulated failure {fault.status}.", details)
    # Google states the delay in the body, not in a Retry-After header.
    return json_response(body, fault.status, {} if details else retry_headers(fault))


DIALECT = Dialect("google", lambda r: r.api_key, _rejection, _fault)


def routes(state: EmulatorState) -> list[Route]:
    upstream = _Gemini(state)
    return [
        Route(f"{PREFIX}/models", upstream_route(state, DIALECT, upstream.models), methods=["GET"]),
        Route(
            f"{PREFIX}/models/{{target}}",
            upstream_route(state, DIALECT, upstream.generate),
            methods=["POST"],
        ),
    ]


class _Gemini:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def models(self, request: Request, recorded: RecordedRequest) -> Response:
        listed = [(m, "generateContent") for m in self.state.models]
        listed += [(m, "embedContent") for m in self.state.embedding_models]
        token = request.query_params.get("pageToken")
        start = int(token.removeprefix("page-")) if token and token.startswith("page-") else 0
        if token and start == 0:
            return json_response(error_body(400, "Invalid page token."), status=400)

        size = min(int(request.query_params.get("pageSize", "50")), max(self.state.page_size, 1))
        page = listed[start : start + size]
        body: dict[str, Any] = {
            "models": [
                {
                    "name": f"models/{model}",
                    "version": "001",
                    "displayName": model,
                    "supportedGenerationMethods": [method, "countTokens"],
                }
                for model, method in page
            ]
        }
        if start + size < len(listed):
            body["nextPageToken"] = f"page-{start + size}"
        return json_response(body)

    async def generate(self, request: Request, recorded: RecordedRequest) -> Response:
        model, _, method = request.path_params["target"].partition(":")
        payload = recorded.json
        if method not in ("generateContent", "streamGenerateContent"):
            return json_response(error_body(404, f"Method {method!r} not found."), status=404)

        if model not in self.state.models:
            return json_response(error_body(404, f"models/{model} is not found."), status=404)

        if not isinstance(payload, dict) or not payload.get("contents"):
            return json_response(error_body(400, "contents is not specified"), status=400)

        answer = plan(
            self.state.scenario,
            read_conversation(model, payload),
            cached_tokens=self.state.cached_tokens,
            reasoning_tokens=self.state.reasoning_tokens,
        )
        if method == "generateContent":
            if answer.fails_midway:
                return json_response(error_body(500, "Internal error."), status=500)
            return json_response(response(model, answer, answer.text, final=True))

        if request.query_params.get("alt") != "sse":
            return json_response(error_body(400, "This emulator streams with alt=sse only."), 400)

        return StreamingResponse(self._events(model, answer), media_type="text/event-stream")

    async def _events(self, model: str, answer: Answer) -> AsyncIterator[bytes]:
        try:
            for event in stream(model, answer, self.state.stream_chunks):
                yield b"data: " + orjson.dumps(event) + b"\r\n\r\n"
                if self.state.chunk_delay > 0:
                    await asyncio.sleep(self.state.chunk_delay)
        except BaseException:
            self.state.streams_cancelled += 1
            raise
        else:
            self.state.streams_finished += 1


def read_conversation(model: str, payload: dict[str, Any]) -> Conversation:
    found = Conversation(model=model)
    system = payload.get("systemInstruction") or {}
    found.texts.extend(_texts(system.get("parts")))
    contents = [c for c in payload.get("contents") or [] if isinstance(c, dict)]
    for content in contents:
        parts = [p for p in content.get("parts") or [] if isinstance(p, dict)]
        found.texts.append(" ".join(_texts(parts)))
        for part in parts:
            if "inlineData" in part:
                found.images.append(f"{part['inlineData'].get('mimeType')} (base64)")
            if "fileData" in part:
                found.images.append(str(part["fileData"].get("fileUri")))
    users = [c for c in contents if c.get("role") == "user"]
    if users:
        parts = [p for p in users[-1].get("parts") or [] if isinstance(p, dict)]
        found.last_user_text = " ".join(_texts(parts))
        found.tool_results = [
            orjson.dumps(p["functionResponse"].get("response")).decode()
            for p in parts
            if "functionResponse" in p
        ]
    for tool in payload.get("tools") or []:
        for declaration in tool.get("functionDeclarations") or []:
            schema = declaration.get("parametersJsonSchema") or declaration.get("parameters") or {}
            found.tools.append(Tool(str(declaration.get("name")), schema))
    return found


def _texts(parts: object) -> list[str]:
    if not isinstance(parts, list):
        return []
    return [str(p["text"]) for p in parts if isinstance(p, dict) and "text" in p]


def _usage(answer: Answer) -> dict[str, Any]:
    usage = {
        "promptTokenCount": answer.input_tokens,
        "candidatesTokenCount": answer.output_tokens - answer.reasoning_tokens,
        "totalTokenCount": answer.input_tokens + answer.output_tokens,
    }
    if answer.cached_tokens:
        usage["cachedContentTokenCount"] = answer.cached_tokens
    if answer.reasoning_tokens:
        usage["thoughtsTokenCount"] = answer.reasoning_tokens
    return usage


def response(
    model: str,
    answer: Answer,
    text: str,
    *,
    final: bool,
    calls: bool = True,
    response_id: str | None = None,
) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"text": text}] if text else []
    if calls:
        parts += [
            {"functionCall": {"name": c.name, "args": c.arguments}} for c in answer.tool_calls
        ]
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    body: dict[str, Any] = {"candidates": [candidate], "modelVersion": model}
    if final:
        candidate["finishReason"] = _FINISH[answer.finish]
        body["usageMetadata"] = _usage(answer)
    body["responseId"] = response_id or f"resp-{uuid.uuid4().hex[:12]}"
    return body


def stream(model: str, answer: Answer, pieces: int) -> list[dict[str, Any]]:
    # Every event of one streamed answer carries the same responseId.
    response_id = f"resp-{uuid.uuid4().hex[:12]}"
    texts = split_evenly(answer.text, pieces) if answer.text else []
    if answer.fails_midway:
        events = [
            response(model, answer, t, final=False, calls=False, response_id=response_id)
            for t in texts[: max(len(texts) // 2, 1)]
        ]
        return [*events, error_body(503, "The model is overloaded. Please try again later.")]

    events = [
        response(model, answer, t, final=False, calls=False, response_id=response_id)
        for t in texts[:-1]
    ]
    last = texts[-1] if texts else ""
    events.append(response(model, answer, last, final=True, response_id=response_id))
    return events
