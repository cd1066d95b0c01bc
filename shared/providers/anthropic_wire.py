"""OpenAI chat (the hub) to Anthropic's Messages API and back, for the Anthropic adapter.

Request: system and developer messages become the top-level ``system`` (in order; a
system message in the middle of a conversation moves to the top), tool results become
``tool_result`` blocks in a user turn, consecutive turns of one role are merged, and
``max_tokens``, which Anthropic requires, defaults to :data:`DEFAULT_MAX_TOKENS`.
Response and stream: text, ``tool_use`` (arguments streamed as ``input_json_delta``) and
thinking (as ``reasoning_content``) become OpenAI's fields; stop reasons are mapped.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from shared.providers import failures
from shared.providers import openai_body as hub
from shared.providers.base import FailureCategory, UnsupportedFeature, UpstreamFailure, Usage
from shared.providers.chunks import Choice, ChunkWriter, FinishReason, ToolCall, completion
from shared.providers.openai_compatible import count
from shared.providers.sse import ServerSentEvent, SSEParser
from shared.secrets import ProviderKey

# Anthropic requires max_tokens. 4096 is the smallest output limit of any Claude model
# still served, so the default is never refused, and it is long enough for most answers;
# a client that wants a longer answer sets max_tokens (or max_completion_tokens) itself.
DEFAULT_MAX_TOKENS: Final = 4096
TARGET: Final = "Anthropic"

STOP_TO_FINISH: Final[dict[str, FinishReason]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_EFFORTS: Final = {"minimal": "low", "low": "low", "medium": "medium", "high": "high"}
_EFFORTS_KEPT: Final = {"xhigh": "xhigh", "max": "max"}
_SUPPORTED: Final = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "tools",
        "tool_choice",
        "response_format",
        "reasoning_effort",
    }
)
_ERROR_CATEGORIES: Final[dict[str, tuple[int, FailureCategory]]] = {
    "invalid_request_error": (400, "invalid_request"),
    "authentication_error": (401, "authentication"),
    "billing_error": (402, "permission"),
    "permission_error": (403, "permission"),
    "not_found_error": (404, "not_found"),
    "request_too_large": (413, "request_too_large"),
    "rate_limit_error": (429, "rate_limited"),
    "timeout_error": (504, "timeout"),
    "api_error": (500, "server_error"),
    "overloaded_error": (529, "overloaded"),
}


def messages_request(body: dict[str, Any]) -> dict[str, Any]:
    """The Messages API body for an OpenAI chat body (model already upstream's)."""
    hub.refuse_unsupported(body, _SUPPORTED, TARGET)
    system, turns = _conversation(body)
    request: dict[str, Any] = {
        "model": body["model"],
        "messages": turns,
        "max_tokens": hub.max_output_tokens(body) or DEFAULT_MAX_TOKENS,
    }
    if system:
        request["system"] = system
    _sampling(body, request)
    _tools(body, request, turns)
    _output(body, request)
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        request["metadata"] = {"user_id": user}
    if body.get("stream"):
        request["stream"] = True
    return request


def _conversation(body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in hub.messages(body):
        if message.role in ("system", "developer"):
            text = hub.text_of(message)
            if text:
                system.append({"type": "text", "text": text})
            continue

        if message.role == "user":
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
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image_block(hub.image_of(path, part)))
        elif kind == "file":
            blocks.append(_document_block(path, part))
        else:
            raise UnsupportedFeature(path, f"'{kind}' content is not supported by {TARGET}.")
    return blocks


def _image_block(image: hub.Image) -> dict[str, Any]:
    source: dict[str, Any]
    if image.data is not None:
        source = {"type": "base64", "media_type": image.media_type, "data": image.data}
    else:
        source = {"type": "url", "url": image.url}
    return {"type": "image", "source": source}


def _document_block(path: str, part: dict[str, Any]) -> dict[str, Any]:
    file = part.get("file")
    data = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data, str) or not data.startswith("data:application/pdf;base64,"):
        raise UnsupportedFeature(
            f"{path}.file", f"{TARGET} takes files only as base64 PDF data URLs."
        )

    return {
        "type": "document",
        "source": {
            "type": "base64",
            "media_type": "application/pdf",
            "data": data.partition(",")[2],
        },
    }


def _assistant_blocks(message: hub.Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    content = message.raw.get("content")
    if content is not None:
        text = hub.text_of(message)
        if text:
            blocks.append({"type": "text", "text": text})
    for _, call_id, name, arguments in hub.tool_calls(message):
        blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": arguments})
    return blocks


def _tool_result(message: hub.Message) -> dict[str, Any]:
    call_id = message.raw.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise UnsupportedFeature(
            f"{message.field}.tool_call_id", "a tool message needs its 'tool_call_id'."
        )

    return {"type": "tool_result", "tool_use_id": call_id, "content": hub.text_of(message)}


def _sampling(body: dict[str, Any], request: dict[str, Any]) -> None:
    temperature = body.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, int | float) or not 0 <= temperature <= 1:
            raise UnsupportedFeature(
                "temperature", f"{TARGET} models take a temperature from 0 to 1."
            )
        request["temperature"] = temperature
    if body.get("top_p") is not None:
        request["top_p"] = body["top_p"]
    stops = hub.stop_sequences(body)
    if stops:
        request["stop_sequences"] = stops


def _tools(body: dict[str, Any], request: dict[str, Any], turns: list[dict[str, Any]]) -> None:
    tools = hub.function_tools(body)
    if tools:
        request["tools"] = [
            {
                "name": tool.name,
                **({"description": tool.description} if tool.description else {}),
                "input_schema": tool.parameters,
            }
            for tool in tools
        ]

    choice = hub.tool_choice(body)
    parallel = body.get("parallel_tool_calls")
    if choice is None and parallel is not False:
        return

    mode, name = choice or ("auto", None)
    choices: dict[str, dict[str, Any]] = {
        "auto": {"type": "auto"},
        "none": {"type": "none"},
        "required": {"type": "any"},
        "function": {"type": "tool", "name": name},
    }
    anthropic_choice = choices[mode]
    if parallel is False and mode != "none":
        anthropic_choice["disable_parallel_tool_use"] = True
    if tools:
        request["tool_choice"] = anthropic_choice


def _output(body: dict[str, Any], request: dict[str, Any]) -> None:
    output: dict[str, Any] = {}
    wanted = hub.json_schema_format(body)
    if wanted is not None:
        kind, schema = wanted
        if kind == "json_object":
            raise UnsupportedFeature(
                "response_format",
                f"{TARGET} models need a JSON schema: use response_format json_schema.",
            )
        output["format"] = {"type": "json_schema", "schema": schema}

    effort = body.get("reasoning_effort")
    if effort is not None and effort != "none":
        mapped = _EFFORTS.get(effort) or _EFFORTS_KEPT.get(effort)
        if mapped is None:
            raise UnsupportedFeature("reasoning_effort", f"unknown reasoning_effort {effort!r}.")
        output["effort"] = mapped
    if output:
        request["output_config"] = output


def usage_of(usage: object) -> Usage | None:
    """Anthropic's usage in the neutral form: input counts every input token, cached included."""
    if not isinstance(usage, dict):
        return None

    cache_read = count(usage, "cache_read_input_tokens")
    return Usage(
        input_tokens=count(usage, "input_tokens")
        + cache_read
        + count(usage, "cache_creation_input_tokens"),
        output_tokens=count(usage, "output_tokens"),
        cached_input_tokens=cache_read,
        reasoning_tokens=count(usage.get("output_tokens_details"), "thinking_tokens"),
    )


def message_to_openai(message: dict[str, Any], model: str) -> dict[str, Any]:
    """An Anthropic Message as an OpenAI chat completion."""
    choice = Choice()
    for block in message.get("content") or []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            choice.text += block.get("text", "")
        elif kind == "thinking":
            choice.reasoning += block.get("thinking", "")
        elif kind == "tool_use":
            choice.tool_calls.append(
                ToolCall(block.get("id", ""), block.get("name", ""), block.get("input") or {})
            )
    choice.finish_reason = STOP_TO_FINISH.get(str(message.get("stop_reason")), "stop")
    return completion(
        model=message.get("model") or model,
        choices=[choice],
        usage=usage_of(message.get("usage")),
        answer_id=message.get("id"),
    )


def error_category(content: bytes, status: int) -> tuple[str, FailureCategory]:
    """(message, category) of an Anthropic error body; the status decides when it says nothing."""
    try:
        payload = orjson.loads(content)
    except orjson.JSONDecodeError:
        return content.decode("utf-8", errors="replace"), failures.category_for_status(status)

    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return content.decode("utf-8", errors="replace"), failures.category_for_status(status)

    message = error.get("message")
    # "api_error" is Anthropic's catch-all: the status says more (503 is an overload).
    known = _ERROR_CATEGORIES.get(str(error.get("type")))
    category = (
        known[1]
        if known and error.get("type") != "api_error"
        else failures.category_for_status(status)
    )
    return (message if isinstance(message, str) else ""), category


class AnthropicStreamDecoder:
    """Anthropic's Messages SSE stream as OpenAI chunks."""

    def __init__(self, model: str, key: ProviderKey, provider: str = "anthropic") -> None:
        self._writer = ChunkWriter(model)
        self._key = key
        self._provider = provider
        self._parser = SSEParser()
        self._usage: Usage | None = None
        self._failure: UpstreamFailure | None = None
        self._stopped = False
        self._finish: FinishReason = "stop"
        # Anthropic numbers content blocks; OpenAI numbers tool calls.
        self._tool_index: dict[int, int] = {}

    @property
    def usage(self) -> Usage | None:
        return self._usage

    @property
    def failure(self) -> UpstreamFailure | None:
        return self._failure

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return self._take(self._parser.feed(data))

    def close(self) -> list[dict[str, Any]]:
        chunks = self._take(self._parser.close())
        if self._failure is None and not self._stopped:
            self._failure = failures.stream_ended_early(self._provider)
        return chunks

    def _take(self, events: list[ServerSentEvent]) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        for event in events:
            if self._failure is not None or self._stopped:
                break

            try:
                payload = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(payload, dict):
                chunks.extend(self._event(payload))
        return chunks

    def _event(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            if isinstance(message.get("id"), str):
                self._writer.id = message["id"]
            self._note_usage(message.get("usage"))
            return self._writer.start()

        if kind == "content_block_start":
            return self._block_start(event)

        if kind == "content_block_delta":
            return self._block_delta(event)

        if kind == "message_delta":
            delta = event.get("delta") or {}
            self._finish = STOP_TO_FINISH.get(str(delta.get("stop_reason")), "stop")
            self._note_usage(event.get("usage"))
            return []

        if kind == "message_stop":
            self._stopped = True
            chunks = self._writer.finish(self._finish)
            if self._usage is not None:
                chunks.append(self._writer.usage(self._usage))
            return chunks

        if kind == "error":
            self._failure = self._stream_error(event.get("error"))
        return []

    def _block_start(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        block = event.get("content_block") or {}
        if block.get("type") == "tool_use":
            index, chunks = self._writer.tool_call(block.get("id", ""), block.get("name", ""))
            self._tool_index[int(event.get("index", 0))] = index
            return chunks

        if block.get("type") == "text":
            return self._writer.text(block.get("text", ""))

        return []

    def _block_delta(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        delta = event.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            return self._writer.text(delta.get("text", ""))

        if kind == "input_json_delta":
            index = self._tool_index.get(int(event.get("index", 0)))
            if index is None:
                return []
            return self._writer.tool_arguments(index, delta.get("partial_json", ""))

        if kind == "thinking_delta":
            return self._writer.reasoning(delta.get("thinking", ""))

        return []

    def _note_usage(self, usage: object) -> None:
        found = usage_of(usage)
        if found is not None:
            self._usage = found if self._usage is None else self._usage.merged(found)

    def _stream_error(self, error: object) -> UpstreamFailure:
        body = orjson.dumps({"type": "error", "error": error})
        kind = error.get("type") if isinstance(error, dict) else None
        status = _ERROR_CATEGORIES.get(str(kind), (500, "server_error"))[0]
        message, category = error_category(body, status)
        return failures.failure(self._provider, status, message, self._key, category=category)
