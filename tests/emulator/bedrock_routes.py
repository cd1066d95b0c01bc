"""Bedrock routes under ``/bedrock``: model and inference-profile listing, Converse, ConverseStream.

One origin plays both the control plane (``/foundation-models``, ``/inference-profiles``
paged with ``maxResults``/``nextToken``) and the runtime (``/model/{id}/converse`` and
``/converse-stream``). Keys are Bedrock API keys sent as bearer tokens. Errors are
``{"message": …}`` with the exception named in ``x-amzn-ErrorType``. ConverseStream
answers in the AWS event-stream framing, each frame written in two pieces when the state
asks, so a decoder must join frames split across reads.
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

from tests.emulator import eventstream
from tests.emulator.scenarios import Answer, Conversation, Tool, halves, plan, split_evenly
from tests.emulator.serving import Dialect, json_response, raw_fault, retry_headers, upstream_route
from tests.emulator.state import EmulatorState, Fault, RecordedRequest

PREFIX = "/bedrock"
_EXCEPTIONS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
_STOP = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}


def error(status: int, message: str, exception: str | None = None, **headers: str) -> Response:
    name = exception or _EXCEPTIONS.get(status, "InternalServerException")
    return json_response(
        {"message": message},
        status=status,
        headers={
            "x-amzn-ErrorType": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/",
            **headers,
        },
    )


def _rejection(recorded: RecordedRequest, state: EmulatorState) -> Response:
    message = "The security token included in the request is invalid."
    if state.echo_key_in_errors and recorded.bearer:
        message = f"Invalid API Key: {recorded.bearer}"
    return error(403, message, "UnrecognizedClientException")


def _fault(fault: Fault) -> Response:
    name = _EXCEPTIONS.get(fault.status, "InternalServerException")
    return raw_fault(fault, {"x-amzn-ErrorType": name}) or error(
        fault.status, f"Emulated {name}.", **retry_headers(fault)
    )


DIALECT = Dialect("bedrock", lambda r: r.bearer, _rejection, _fault)


def routes(state: EmulatorState) -> list[Route]:
    upstream = _Bedrock(state)
    return [
        Route(
            f"{PREFIX}/foundation-models",
            upstream_route(state, DIALECT, upstream.foundation_models),
            methods=["GET"],
        ),
        Route(
            f"{PREFIX}/inference-profiles",
            upstream_route(state, DIALECT, upstream.inference_profiles),
            methods=["GET"],
        ),
        Route(
            f"{PREFIX}/model/{{model_id}}/{{action}}",
            upstream_route(state, DIALECT, upstream.converse),
            methods=["POST"],
        ),
    ]


class _Bedrock:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def foundation_models(self, request: Request, recorded: RecordedRequest) -> Response:
        summaries = [
            {
                "modelArn": f"arn:aws:bedrock:us-east-1::foundation-model/{model}",
                "modelId": model,
                "modelName": model,
                "providerName": self.state.owned_by,
                "inputModalities": ["TEXT", "IMAGE"],
                "outputModalities": ["TEXT"],
                "responseStreamingSupported": True,
                "inferenceTypesSupported": ["ON_DEMAND"],
                "modelLifecycle": {"status": "ACTIVE"},
            }
            for model in self.state.models
        ]
        # A provisioned-only model a gateway cannot call on demand.
        summaries.append(
            {
                "modelArn": "arn:aws:bedrock:us-east-1::foundation-model/emulated.provisioned-only-v1:0",
                "modelId": "emulated.provisioned-only-v1:0",
                "providerName": "Emulated",
                "outputModalities": ["TEXT"],
                "inferenceTypesSupported": ["PROVISIONED"],
            }
        )
        return json_response({"modelSummaries": summaries})

    async def inference_profiles(self, request: Request, recorded: RecordedRequest) -> Response:
        profiles = self.state.inference_profiles
        token = request.query_params.get("nextToken")
        start = int(token) if token and token.isdigit() else 0
        size = min(
            int(request.query_params.get("maxResults", "1000")), max(self.state.page_size, 1)
        )
        page = profiles[start : start + size]
        body: dict[str, Any] = {
            "inferenceProfileSummaries": [
                {
                    "inferenceProfileId": profile,
                    "inferenceProfileName": profile,
                    "status": "ACTIVE",
                    "type": "SYSTEM_DEFINED",
                }
                for profile in page
            ]
        }
        if start + size < len(profiles):
            body["nextToken"] = str(start + size)
        return json_response(body)

    async def converse(self, request: Request, recorded: RecordedRequest) -> Response:
        model, action = request.path_params["model_id"], request.path_params["action"]
        if action not in ("converse", "converse-stream"):
            return error(404, f"Unknown operation {action}.")

        if model not in self.state.models and model not in self.state.inference_profiles:
            return error(400, "The provided model identifier is invalid.")

        payload = recorded.json
        if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
            return error(400, "1 validation error detected: messages must not be null")

        answer = plan(
            self.state.scenario,
            read_conversation(model, payload),
            cached_tokens=self.state.cached_tokens,
            reasoning_tokens=self.state.reasoning_tokens,
        )
        if action == "converse":
            if answer.fails_midway:
                return error(500, "Emulated internal failure.")
            return json_response(converse_body(answer))

        return StreamingResponse(
            self._frames(answer), media_type="application/vnd.amazon.eventstream"
        )

    async def _frames(self, answer: Answer) -> AsyncIterator[bytes]:
        try:
            for frame in stream_frames(answer, self.state.stream_chunks):
                if self.state.split_frames:
                    yield frame[:7]
                    await asyncio.sleep(0)
                    yield frame[7:]
                else:
                    yield frame
                if self.state.chunk_delay > 0:
                    await asyncio.sleep(self.state.chunk_delay)
        except BaseException:
            self.state.streams_cancelled += 1
            raise
        else:
            self.state.streams_finished += 1


def read_conversation(model: str, payload: dict[str, Any]) -> Conversation:
    found = Conversation(model=model)
    found.texts.extend(
        str(s.get("text", "")) for s in payload.get("system") or [] if isinstance(s, dict)
    )
    messages = [m for m in payload.get("messages") or [] if isinstance(m, dict)]
    for message in messages:
        blocks = [b for b in message.get("content") or [] if isinstance(b, dict)]
        found.texts.append(" ".join(str(b["text"]) for b in blocks if "text" in b))
        for block in blocks:
            image = block.get("image")
            if isinstance(image, dict):
                found.images.append(f"image/{image.get('format')} (base64)")
    users = [m for m in messages if m.get("role") == "user"]
    if users:
        blocks = [b for b in users[-1].get("content") or [] if isinstance(b, dict)]
        found.last_user_text = " ".join(str(b["text"]) for b in blocks if "text" in b)
        found.tool_results = [
            " ".join(str(c.get("text", "")) for c in b["toolResult"].get("content") or [])
            for b in blocks
            if "toolResult" in b
        ]
    tools = (payload.get("toolConfig") or {}).get("tools") or []
    for tool in tools:
        spec = tool.get("toolSpec") or {}
        found.tools.append(
            Tool(str(spec.get("name")), (spec.get("inputSchema") or {}).get("json") or {})
        )
    return found


def _usage(answer: Answer) -> dict[str, Any]:
    usage = {
        "inputTokens": answer.input_tokens - answer.cached_tokens,
        "outputTokens": answer.output_tokens,
        "totalTokens": answer.input_tokens + answer.output_tokens,
    }
    if answer.cached_tokens:
        usage["cacheReadInputTokens"] = answer.cached_tokens
    return usage


def _tool_id(index: int) -> str:
    return f"tooluse_emulated_{index}"


def converse_body(answer: Answer) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"text": answer.text}] if answer.text else []
    for index, call in enumerate(answer.tool_calls):
        content.append(
            {"toolUse": {"toolUseId": _tool_id(index), "name": call.name, "input": call.arguments}}
        )
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": _STOP[answer.finish],
        "usage": _usage(answer),
        "metrics": {"latencyMs": 1},
    }


def stream_frames(answer: Answer, pieces: int) -> list[bytes]:
    def event(name: str, body: dict[str, Any]) -> bytes:
        # Bedrock pads events with a random "p" field so their size says nothing.
        return eventstream.event(name, orjson.dumps({**body, "p": uuid.uuid4().hex[:8]}))

    frames = [event("messageStart", {"role": "assistant"})]
    block = 0
    if answer.text:
        texts = split_evenly(answer.text, pieces)
        if answer.fails_midway:
            texts = texts[: max(len(texts) // 2, 1)]
        frames += [
            event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": t}})
            for t in texts
        ]
        if answer.fails_midway:
            failure = orjson.dumps({"message": "The model stream failed. Retry your request."})
            return [*frames, eventstream.exception("modelStreamErrorException", failure)]
        frames.append(event("contentBlockStop", {"contentBlockIndex": 0}))
        block = 1
    for index, call in enumerate(answer.tool_calls, start=block):
        start = {"toolUse": {"toolUseId": _tool_id(index - block), "name": call.name}}
        frames.append(event("contentBlockStart", {"contentBlockIndex": index, "start": start}))
        for fragment in halves(orjson.dumps(call.arguments).decode()):
            delta = {"toolUse": {"input": fragment}}
            frames.append(event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}))
        frames.append(event("contentBlockStop", {"contentBlockIndex": index}))
    frames.append(event("messageStop", {"stopReason": _STOP[answer.finish]}))
    frames.append(event("metadata", {"usage": _usage(answer), "metrics": {"latencyMs": 1}}))
    return frames
