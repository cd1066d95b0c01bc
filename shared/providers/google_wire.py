"""OpenAI chat (the hub) to Gemini's ``generateContent`` and back, for the Google adapter.

Request: system and developer messages become ``systemInstruction``; assistant turns are
``model`` turns; images become ``inlineData`` (base64) or ``fileData`` (a URL, its type
guessed from its file name); tool calls become ``functionCall`` parts and tool results
``functionResponse`` parts named after the call they answer; tool schemas and JSON
schemas travel as JSON Schema (``parametersJsonSchema``, ``responseJsonSchema``).
Response and stream: ``text`` parts (``thought`` ones as ``reasoning_content``) and
``functionCall`` parts, which Gemini sends whole, so a streamed call's arguments arrive
in one delta. Gemini gives calls no id unless asked, so missing ids are made up.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from shared.providers import failures
from shared.providers import openai_body as hub
from shared.providers.base import FailureCategory, UnsupportedFeature, UpstreamFailure, Usage
from shared.providers.chunks import Choice, ChunkWriter, FinishReason, ToolCall, completion, new_id
from shared.providers.openai_compatible import count
from shared.providers.sse import SSEParser
from shared.secrets import ProviderKey

TARGET: Final = "Gemini"

FINISH: Final[dict[str, FinishReason]] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
_STATUS_CATEGORIES: Final[dict[str, FailureCategory]] = {
    "INVALID_ARGUMENT": "invalid_request",
    "FAILED_PRECONDITION": "invalid_request",
    "OUT_OF_RANGE": "invalid_request",
    "UNAUTHENTICATED": "authentication",
    "PERMISSION_DENIED": "permission",
    "NOT_FOUND": "not_found",
    "RESOURCE_EXHAUSTED": "rate_limited",
    "UNAVAILABLE": "overloaded",
    "DEADLINE_EXCEEDED": "timeout",
    "INTERNAL": "server_error",
}
_SUPPORTED: Final = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "n",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "tools",
        "tool_choice",
        "response_format",
    }
)


def generate_request(body: dict[str, Any]) -> dict[str, Any]:
    """The ``generateContent`` body for an OpenAI chat body (the model goes in the URL)."""
    hub.refuse_unsupported(body, _SUPPORTED, TARGET)
    system, contents = _conversation(body)
    request: dict[str, Any] = {"contents": contents}
    if system:
        request["systemInstruction"] = {"parts": [{"text": text} for text in system]}
    config = _generation_config(body)
    if config:
        request["generationConfig"] = config
    _tools(body, request)
    return request


def _conversation(body: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    names = hub.tool_names_by_call_id(body)
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    for message in hub.messages(body):
        if message.role in ("system", "developer"):
            text = hub.text_of(message)
            if text:
                system.append(text)
        elif message.role == "user":
            hub.append_turn(contents, "user", _user_parts(message), key="parts")
        elif message.role == "assistant":
            hub.append_turn(contents, "model", _model_parts(message), key="parts")
        elif message.role == "tool":
            hub.append_turn(contents, "user", [_function_response(message, names)], key="parts")
        else:
            raise UnsupportedFeature(
                f"{message.field}.role", f"messages with role '{message.role}' are not supported."
            )
    return system, contents


def _user_parts(message: hub.Message) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for path, part in hub.content_parts(message):
        kind = part["type"]
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"text": part["text"]})
        elif kind == "image_url":
            image = hub.image_of(path, part)
            if image.data is not None:
                parts.append({"inlineData": {"mimeType": image.media_type, "data": image.data}})
            else:
                parts.append({"fileData": {"mimeType": image.media_type, "fileUri": image.url}})
        else:
            raise UnsupportedFeature(path, f"'{kind}' content is not supported by {TARGET}.")
    return parts


def _model_parts(message: hub.Message) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if message.raw.get("content") is not None:
        text = hub.text_of(message)
        if text:
            parts.append({"text": text})
    for _, call_id, name, arguments in hub.tool_calls(message):
        parts.append({"functionCall": {"id": call_id, "name": name, "args": arguments}})
    return parts


def _function_response(message: hub.Message, names: dict[str, str]) -> dict[str, Any]:
    call_id = message.raw.get("tool_call_id")
    name = names.get(call_id) if isinstance(call_id, str) else None
    if name is None:
        raise UnsupportedFeature(
            f"{message.field}.tool_call_id",
            "a tool result must answer a tool call of an earlier assistant message.",
        )

    text = hub.text_of(message)
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    # Gemini wants an object; a plain text result is wrapped.
    response = parsed if isinstance(parsed, dict) else {"result": text}
    return {"functionResponse": {"id": call_id, "name": name, "response": response}}


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    simple = {
        "temperature": "temperature",
        "top_p": "topP",
        "n": "candidateCount",
        "seed": "seed",
        "presence_penalty": "presencePenalty",
        "frequency_penalty": "frequencyPenalty",
    }
    for openai_name, gemini_name in simple.items():
        if body.get(openai_name) is not None:
            config[gemini_name] = body[openai_name]
    limit = hub.max_output_tokens(body)
    if limit is not None:
        config["maxOutputTokens"] = limit
    stops = hub.stop_sequences(body)
    if stops:
        config["stopSequences"] = stops
    wanted = hub.json_schema_format(body)
    if wanted is not None:
        config["responseMimeType"] = "application/json"
        if wanted[1] is not None:
            config["responseJsonSchema"] = wanted[1]
    return config


def _tools(body: dict[str, Any], request: dict[str, Any]) -> None:
    tools = hub.function_tools(body)
    if tools:
        declarations = []
        for tool in tools:
            declaration: dict[str, Any] = {
                "name": tool.name,
                "parametersJsonSchema": tool.parameters,
            }
            if tool.description:
                declaration["description"] = tool.description
            declarations.append(declaration)
        request["tools"] = [{"functionDeclarations": declarations}]

    choice = hub.tool_choice(body)
    if choice is None:
        return

    mode, name = choice
    config: dict[str, Any] = {
        "mode": {"auto": "AUTO", "none": "NONE", "required": "ANY", "function": "ANY"}[mode]
    }
    if name is not None:
        config["allowedFunctionNames"] = [name]
    request["toolConfig"] = {"functionCallingConfig": config}


def usage_of(metadata: object) -> Usage | None:
    """``usageMetadata`` in the neutral form: output counts thoughts too, as OpenAI's does."""
    if not isinstance(metadata, dict):
        return None

    thoughts = count(metadata, "thoughtsTokenCount")
    return Usage(
        input_tokens=count(metadata, "promptTokenCount")
        + count(metadata, "toolUsePromptTokenCount"),
        output_tokens=count(metadata, "candidatesTokenCount") + thoughts,
        cached_input_tokens=count(metadata, "cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )


def response_to_openai(payload: dict[str, Any], model: str) -> dict[str, Any]:
    """A ``GenerateContentResponse`` as an OpenAI chat completion."""
    choices: list[Choice] = []
    for position, candidate in enumerate(payload.get("candidates") or []):
        choice = Choice(index=int(candidate.get("index", position)))
        for part in (candidate.get("content") or {}).get("parts") or []:
            _take_part(choice, part)
        choice.finish_reason = _finish(candidate.get("finishReason"), bool(choice.tool_calls))
        choices.append(choice)
    if not choices:
        # A prompt blocked by safety settings answers with promptFeedback and no candidate.
        choices.append(Choice(finish_reason="content_filter"))
    return completion(
        model=payload.get("modelVersion") or model,
        choices=choices,
        usage=usage_of(payload.get("usageMetadata")),
        answer_id=payload.get("responseId"),
    )


def _take_part(choice: Choice, part: object) -> None:
    if not isinstance(part, dict):
        return

    if isinstance(part.get("text"), str):
        if part.get("thought"):
            choice.reasoning += part["text"]
        else:
            choice.text += part["text"]
    call = part.get("functionCall")
    if isinstance(call, dict):
        choice.tool_calls.append(
            ToolCall(call.get("id") or new_id("call"), call.get("name", ""), call.get("args") or {})
        )


def _finish(reason: object, called: bool) -> FinishReason:
    finish = FINISH.get(str(reason), "stop")
    return "tool_calls" if called and finish == "stop" else finish


def error_of(content: bytes, status: int) -> tuple[str, FailureCategory, str | None]:
    """(message, category, retry delay in seconds) of a Google API error body."""
    try:
        payload = orjson.loads(content)
    except orjson.JSONDecodeError:
        return content.decode("utf-8", errors="replace"), failures.category_for_status(status), None

    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return content.decode("utf-8", errors="replace"), failures.category_for_status(status), None

    raw_details = error.get("details")
    details: list[Any] = raw_details if isinstance(raw_details, list) else []
    reasons = {d.get("reason") for d in details if isinstance(d, dict)}
    delays = [d.get("retryDelay") for d in details if isinstance(d, dict) and d.get("retryDelay")]
    category: FailureCategory = (
        "authentication"
        if "API_KEY_INVALID" in reasons
        else _STATUS_CATEGORIES.get(str(error.get("status")), failures.category_for_status(status))
    )
    retry = str(delays[0]).removesuffix("s") if delays else None
    message = error.get("message")
    return (message if isinstance(message, str) else ""), category, retry


def refuses_key(status: int, content: bytes) -> bool:
    """Gemini answers a bad key with 400 INVALID_ARGUMENT whose detail says API_KEY_INVALID."""
    return status == 400 and error_of(content, status)[1] == "authentication"


class GeminiStreamDecoder:
    """``streamGenerateContent?alt=sse``: each event is a partial GenerateContentResponse."""

    def __init__(self, model: str, key: ProviderKey, provider: str = "google") -> None:
        self._writer = ChunkWriter(model)
        self._key = key
        self._provider = provider
        self._parser = SSEParser()
        self._usage: Usage | None = None
        self._failure: UpstreamFailure | None = None
        self._finished: dict[int, bool] = {}
        # Candidates that called a function: their "STOP" means tool_calls.
        self._called: set[int] = set()
        self._closed = False
        self._named = False

    @property
    def usage(self) -> Usage | None:
        return self._usage

    @property
    def failure(self) -> UpstreamFailure | None:
        return self._failure

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        for event in self._parser.feed(data):
            if self._failure is not None:
                break
            chunks.extend(self._event(event.data))
        return chunks

    def close(self) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        for event in self._parser.close():
            if self._failure is None:
                chunks.extend(self._event(event.data))
        if self._failure is not None or self._closed:
            return chunks

        self._closed = True
        # Gemini sends no end marker: the stream is whole when every candidate finished.
        if not self._finished or not all(self._finished.values()):
            self._failure = failures.stream_ended_early(self._provider)
            return chunks

        if self._usage is not None:
            chunks.append(self._writer.usage(self._usage))
        return chunks

    def _event(self, data: str) -> list[dict[str, Any]]:
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(payload, dict):
            return []

        if isinstance(payload.get("error"), dict):
            status = payload["error"].get("code")
            status = status if isinstance(status, int) and 400 <= status <= 599 else 500
            message, category, _ = error_of(data.encode(), status)
            self._failure = failures.failure(
                self._provider, status, message, self._key, category=category
            )
            return []

        if isinstance(payload.get("responseId"), str) and not self._named:
            # Every event of one answer repeats its id; chunks keep the first either way.
            self._writer.id = payload["responseId"]
            self._named = True
        usage = usage_of(payload.get("usageMetadata"))
        if usage is not None:
            self._usage = usage if self._usage is None else self._usage.merged(usage)
        chunks: list[dict[str, Any]] = []
        for position, candidate in enumerate(payload.get("candidates") or []):
            chunks.extend(self._candidate(int(candidate.get("index", position)), candidate))
        return chunks

    def _candidate(self, index: int, candidate: dict[str, Any]) -> list[dict[str, Any]]:
        self._finished.setdefault(index, False)
        chunks = self._writer.start(index)
        called = False
        for part in (candidate.get("content") or {}).get("parts") or []:
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                if part.get("thought"):
                    chunks.extend(self._writer.reasoning(part["text"], index))
                else:
                    chunks.extend(self._writer.text(part["text"], index))
            call = part.get("functionCall")
            if isinstance(call, dict):
                called = True
                arguments = orjson.dumps(call.get("args") or {}).decode()
                _, opened = self._writer.tool_call(
                    call.get("id") or new_id("call"), call.get("name", ""), arguments, index
                )
                chunks.extend(opened)
        if called:
            self._called.add(index)
        if candidate.get("finishReason"):
            self._finished[index] = True
            reason = _finish(candidate["finishReason"], index in self._called)
            chunks.extend(self._writer.finish(reason, index))
        return chunks
