"""OpenAI chat (the hub) to Bedrock's Converse API and back, for the Bedrock adapter.

Request: system and developer messages become ``system`` blocks; images must be inline
(base64 ``data:`` URLs) or ``s3://`` locations, since Converse fetches no web URL; tool
calls become ``toolUse`` blocks and tool results ``toolResult`` blocks in a user turn;
``tool_choice`` maps to ``auto``/``any``/``tool``, and ``"none"`` leaves the tools out
(refused when the conversation already holds tool blocks, which need the tool config).
Response and stream: text, ``toolUse`` (streamed input as ``toolUse.input`` fragments) and
``reasoningContent`` (as ``reasoning_content``); ConverseStream's events arrive in the AWS
event-stream framing (see :mod:`eventstream`).
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from shared.providers import failures
from shared.providers import openai_body as hub
from shared.providers.base import FailureCategory, UnsupportedFeature, UpstreamFailure, Usage
from shared.providers.chunks import Choice, ChunkWriter, FinishReason, ToolCall, completion
from shared.providers.eventstream import EventStreamDecoder, EventStreamError, EventStreamMessage
from shared.providers.openai_compatible import count
from shared.secrets import ProviderKey

TARGET: Final = "Bedrock"

STOP_TO_FINISH: Final[dict[str, FinishReason]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
# Bedrock names its errors in x-amzn-ErrorType (HTTP) or :exception-type (in a stream).
_EXCEPTIONS: Final[dict[str, tuple[int, FailureCategory]]] = {
    "validationexception": (400, "invalid_request"),
    "unrecognizedclientexception": (403, "authentication"),
    "accessdeniedexception": (403, "permission"),
    "resourcenotfoundexception": (404, "not_found"),
    "modeltimeoutexception": (408, "timeout"),
    "throttlingexception": (429, "rate_limited"),
    "modelnotreadyexception": (429, "overloaded"),
    "servicequotaexceededexception": (429, "rate_limited"),
    "modelerrorexception": (424, "server_error"),
    "internalserverexception": (500, "server_error"),
    "modelstreamerrorexception": (424, "server_error"),
    "serviceunavailableexception": (503, "overloaded"),
}
_IMAGE_FORMATS: Final = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_SUPPORTED: Final = frozenset(
    {"max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "tools", "tool_choice"}
)


def converse_request(body: dict[str, Any]) -> dict[str, Any]:
    """The Converse body for an OpenAI chat body (the model goes in the URL)."""
    hub.refuse_unsupported(body, _SUPPORTED, TARGET)
    system, turns = _conversation(body)
    request: dict[str, Any] = {"messages": turns}
    if system:
        request["system"] = [{"text": text} for text in system]
    config: dict[str, Any] = {}
    limit = hub.max_output_tokens(body)
    if limit is not None:
        config["maxTokens"] = limit
    for openai_name, bedrock_name in (("temperature", "temperature"), ("top_p", "topP")):
        if body.get(openai_name) is not None:
            config[bedrock_name] = body[openai_name]
    stops = hub.stop_sequences(body)
    if stops:
        config["stopSequences"] = stops
    if config:
        request["inferenceConfig"] = config
    _tools(body, request, turns)
    return request


def _conversation(body: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in hub.messages(body):
        if message.role in ("system", "developer"):
            text = hub.text_of(message)
            if text:
                system.append(text)
        elif message.role == "user":
            hub.append_turn(turns, "user", _user_blocks(message))
        elif message.role == "assistant":
            hub.append_turn(turns, "assistant", _assistant_blocks(message))
        elif message.role == "tool":
            hub.append_turn(turns, "user", [_tool_result(message)])
        else:
            raise UnsupportedFeature(
                f"{message.field}.role", f"messages with role '{message.role}' are not supported."
            )
    return system, turns


def _user_blocks(message: hub.Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for path, part in hub.content_parts(message):
        kind = part["type"]
        if kind == "text" and isinstance(part.get("text"), str):
            blocks.append({"text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image_block(path, hub.image_of(path, part)))
        else:
            raise UnsupportedFeature(path, f"'{kind}' content is not supported by {TARGET}.")
    return blocks


def _image_block(path: str, image: hub.Image) -> dict[str, Any]:
    image_format = _IMAGE_FORMATS.get(image.media_type)
    if image_format is None:
        raise UnsupportedFeature(
            f"{path}.image_url", f"{TARGET} takes PNG, JPEG, GIF or WebP images only."
        )

    if image.data is not None:
        return {"image": {"format": image_format, "source": {"bytes": image.data}}}

    if image.url is not None and image.url.startswith("s3://"):
        return {"image": {"format": image_format, "source": {"s3Location": {"uri": image.url}}}}

    raise UnsupportedFeature(
        f"{path}.image_url",
        f"{TARGET} cannot fetch image URLs: send the image as a base64 data URL.",
    )


def _assistant_blocks(message: hub.Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if message.raw.get("content") is not None:
        text = hub.text_of(message)
        if text:
            blocks.append({"text": text})
    for _, call_id, name, arguments in hub.tool_calls(message):
        blocks.append({"toolUse": {"toolUseId": call_id, "name": name, "input": arguments}})
    return blocks


def _tool_result(message: hub.Message) -> dict[str, Any]:
    call_id = message.raw.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise UnsupportedFeature(
            f"{message.field}.tool_call_id", "a tool message needs its 'tool_call_id'."
        )

    return {"toolResult": {"toolUseId": call_id, "content": [{"text": hub.text_of(message)}]}}


def _tools(body: dict[str, Any], request: dict[str, Any], turns: list[dict[str, Any]]) -> None:
    tools = hub.function_tools(body)
    choice = hub.tool_choice(body)
    mode, name = choice or ("auto", None)
    if not tools:
        return

    if mode == "none":
        if _has_tool_blocks(turns):
            raise UnsupportedFeature(
                "tool_choice",
                f"{TARGET} cannot forbid tools in a conversation that already used them.",
            )
        return

    config: dict[str, Any] = {
        "tools": [
            {
                "toolSpec": {
                    "name": tool.name,
                    **({"description": tool.description} if tool.description else {}),
                    "inputSchema": {"json": tool.parameters},
                }
            }
            for tool in tools
        ]
    }
    if choice is not None:
        config["toolChoice"] = {
            "auto": {"auto": {}},
            "required": {"any": {}},
            "function": {"tool": {"name": name}},
        }[mode]
    request["toolConfig"] = config


def _has_tool_blocks(turns: list[dict[str, Any]]) -> bool:
    return any(
        "toolUse" in block or "toolResult" in block for turn in turns for block in turn["content"]
    )


def usage_of(usage: object) -> Usage | None:
    """Converse ``usage`` in the neutral form: input counts cache reads and writes too."""
    if not isinstance(usage, dict):
        return None

    cache_read = count(usage, "cacheReadInputTokens")
    return Usage(
        input_tokens=count(usage, "inputTokens")
        + cache_read
        + count(usage, "cacheWriteInputTokens"),
        output_tokens=count(usage, "outputTokens"),
        cached_input_tokens=cache_read,
    )


def response_to_openai(payload: dict[str, Any], model: str) -> dict[str, Any]:
    choice = Choice()
    message = (payload.get("output") or {}).get("message") or {}
    for block in message.get("content") or []:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            choice.text += block["text"]
        use = block.get("toolUse")
        if isinstance(use, dict):
            choice.tool_calls.append(
                ToolCall(use.get("toolUseId", ""), use.get("name", ""), use.get("input") or {})
            )
        reasoning = (block.get("reasoningContent") or {}).get("reasoningText")
        if isinstance(reasoning, dict) and isinstance(reasoning.get("text"), str):
            choice.reasoning += reasoning["text"]
    choice.finish_reason = STOP_TO_FINISH.get(str(payload.get("stopReason")), "stop")
    return completion(model=model, choices=[choice], usage=usage_of(payload.get("usage")))


def exception_of(name: str | None, status: int) -> tuple[int, FailureCategory]:
    """The status and category of a named Bedrock exception (``ThrottlingException:…``)."""
    short = (name or "").split(":")[0].strip().lower()
    known = _EXCEPTIONS.get(short)
    if known is not None:
        return known

    return status, failures.category_for_status(status)


def error_message(content: bytes) -> str:
    try:
        payload = orjson.loads(content)
    except orjson.JSONDecodeError:
        return content.decode("utf-8", errors="replace")

    if isinstance(payload, dict):
        for field in ("message", "Message"):
            if isinstance(payload.get(field), str):
                return str(payload[field])

    return content.decode("utf-8", errors="replace")


class ConverseStreamDecoder:
    """ConverseStream's event-stream messages as OpenAI chunks."""

    def __init__(self, model: str, key: ProviderKey, provider: str = "bedrock") -> None:
        self._writer = ChunkWriter(model)
        self._key = key
        self._provider = provider
        self._frames = EventStreamDecoder()
        self._usage: Usage | None = None
        self._failure: UpstreamFailure | None = None
        self._stopped = False
        self._ended = False
        # Bedrock numbers content blocks; OpenAI numbers tool calls.
        self._tool_index: dict[int, int] = {}

    @property
    def usage(self) -> Usage | None:
        return self._usage

    @property
    def failure(self) -> UpstreamFailure | None:
        return self._failure

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        if self._failure is not None or self._ended:
            return []

        try:
            messages = self._frames.feed(data)
        except EventStreamError as error:
            self._failure = UpstreamFailure(
                f"{self._provider} sent a malformed event stream ({error})",
                provider=self._provider,
                status=502,
                category="bad_response",
            )
            return []

        chunks: list[dict[str, Any]] = []
        for message in messages:
            if self._failure is not None or self._ended:
                break
            chunks.extend(self._message(message))
        return chunks

    def close(self) -> list[dict[str, Any]]:
        if self._failure is not None or self._ended:
            return []

        self._ended = True
        if not self._stopped:
            self._failure = failures.stream_ended_early(self._provider)
            return []

        # The metadata event with usage normally ends the stream; without it, end here.
        return [self._writer.usage(self._usage)] if self._usage is not None else []

    def _message(self, message: EventStreamMessage) -> list[dict[str, Any]]:
        kind = message.header(":message-type")
        if kind in ("exception", "error"):
            name = message.header(":exception-type") or message.header(":error-code")
            status, category = exception_of(name, 500)
            text = error_message(message.payload) or message.header(":error-message") or ""
            self._failure = failures.failure(
                self._provider, status, text, self._key, category=category
            )
            return []

        try:
            payload = orjson.loads(message.payload) if message.payload else {}
        except orjson.JSONDecodeError:
            return []
        if not isinstance(payload, dict):
            return []

        return self._event(message.header(":event-type"), payload)

    def _event(self, kind: str | None, event: dict[str, Any]) -> list[dict[str, Any]]:
        if kind == "messageStart":
            return self._writer.start()

        if kind == "contentBlockStart":
            use = (event.get("start") or {}).get("toolUse")
            if not isinstance(use, dict):
                return []
            index, chunks = self._writer.tool_call(use.get("toolUseId", ""), use.get("name", ""))
            self._tool_index[int(event.get("contentBlockIndex", 0))] = index
            return chunks

        if kind == "contentBlockDelta":
            return self._delta(event)

        if kind == "messageStop":
            self._stopped = True
            return self._writer.finish(STOP_TO_FINISH.get(str(event.get("stopReason")), "stop"))

        if kind == "metadata":
            found = usage_of(event.get("usage"))
            if found is not None:
                self._usage = found
            if self._stopped:
                self._ended = True
                return [self._writer.usage(found)] if found is not None else []
        return []

    def _delta(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        delta = event.get("delta") or {}
        if isinstance(delta.get("text"), str):
            return self._writer.text(delta["text"])

        use = delta.get("toolUse")
        if isinstance(use, dict):
            index = self._tool_index.get(int(event.get("contentBlockIndex", 0)))
            if index is None:
                return []
            return self._writer.tool_arguments(index, str(use.get("input", "")))

        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict) and isinstance(reasoning.get("text"), str):
            return self._writer.reasoning(reasoning["text"])

        return []
