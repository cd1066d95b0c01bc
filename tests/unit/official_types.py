"""Each provider's wire format checked against the types of its own official SDK.

The adapters and the emulator were both written from the providers' documentation; if
both misread it the same way, the contract tests would still pass. These checks take
the judgement from the vendors' own published packages instead: the OpenAI, Anthropic,
Groq and Google Gen AI SDKs' types, and the Bedrock service model that botocore ships.
Each check raises AssertionError naming what the official type refused.

What is checked per provider: the request an adapter sends, a whole answer, every event
of a stream, and each page of the model list, all as bytes seen on the wire.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cache
from typing import Any, Final, Protocol
from urllib.parse import unquote, urlsplit

import anthropic.types
import botocore.session
import google.genai.types as gemini
import groq.types.chat
import openai.types
import openai.types.chat
import orjson
import pydantic
from botocore.eventstream import EventStreamBuffer
from botocore.model import OperationModel, Shape, StructureShape
from botocore.validate import ParamValidator

from shared.providers.sse import SSEParser


class WireCheck(Protocol):
    def request(self, url: str, body: bytes) -> None: ...

    def answer(self, content: bytes) -> None: ...

    def stream(self, content: bytes) -> None: ...

    def models_page(self, path: str, content: bytes) -> None: ...


def _events(content: bytes) -> Iterator[dict[str, Any]]:
    """The JSON data of each server-sent event, as any SSE client would frame them."""
    parser = SSEParser()
    for event in [*parser.feed(content), *parser.close()]:
        if event.data and event.data != "[DONE]":
            yield orjson.loads(event.data)


def _valid(kind: Any, value: Any, what: str) -> None:
    # The adapter must outlive the draining: lazily validated fields still need it.
    adapter = _adapter(kind)
    try:
        _drained(adapter.validate_python(value, strict=False))
    except pydantic.ValidationError as error:
        raise AssertionError(f"{what} is not what the official SDK accepts:\n{error}") from None


@cache
def _adapter(kind: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(kind)


def _drained(value: Any) -> Any:
    """Validation of an ``Iterable`` field waits until it is iterated: iterate them all."""
    if isinstance(value, dict):
        return {k: _drained(v) for k, v in value.items()}
    if isinstance(value, list | tuple | Iterator):
        return [_drained(v) for v in value]
    return value


class OpenAIWire:
    """OpenAI's chat format, and the vendors that speak it (their answers checked by theirs)."""

    def __init__(self, chunk_type: Any = openai.types.chat.ChatCompletionChunk) -> None:
        self._chunk_type = chunk_type

    def request(self, url: str, body: bytes) -> None:
        _valid(openai.types.chat.CompletionCreateParams, orjson.loads(body), "the chat request")

    def answer(self, content: bytes) -> None:
        _valid(openai.types.chat.ChatCompletion, orjson.loads(content), "the chat answer")

    def stream(self, content: bytes) -> None:
        for event in _events(content):
            if "error" in event:
                continue  # an error event midway, which no chunk type describes
            _valid(self._chunk_type, event, "a stream chunk")

    def models_page(self, path: str, content: bytes) -> None:
        page = orjson.loads(content)
        assert page.get("object") == "list", page
        for entry in page["data"]:
            _valid(openai.types.Model, entry, "a listed model")


GROQ: Final = OpenAIWire(groq.types.chat.ChatCompletionChunk)


class AnthropicWire:
    def request(self, url: str, body: bytes) -> None:
        _valid(anthropic.types.MessageCreateParams, orjson.loads(body), "the messages request")

    def answer(self, content: bytes) -> None:
        _valid(anthropic.types.Message, orjson.loads(content), "the messages answer")

    def stream(self, content: bytes) -> None:
        for event in _events(content):
            if event.get("type") == "ping":
                continue  # documented keep-alive, which the SDK's event union leaves out
            if event.get("type") == "error":
                _valid(anthropic.types.ErrorResponse, event, "a stream error event")
            else:
                _valid(anthropic.types.RawMessageStreamEvent, event, "a stream event")

    def models_page(self, path: str, content: bytes) -> None:
        page = orjson.loads(content)
        assert set(page) == {"data", "first_id", "last_id", "has_more"}, page
        for entry in page["data"]:
            _valid(anthropic.types.ModelInfo, entry, "a listed model")


class GeminiWire:
    """Gemini's REST format; the SDK's types forbid any field they do not define."""

    _REQUEST_PARTS: Final = {
        "contents": list[gemini.Content],
        "systemInstruction": gemini.Content,
        "generationConfig": gemini.GenerationConfig,
        "tools": list[gemini.Tool],
        "toolConfig": gemini.ToolConfig,
        "safetySettings": list[gemini.SafetySetting],
    }

    def request(self, url: str, body: bytes) -> None:
        payload = orjson.loads(body)
        unknown = set(payload) - set(self._REQUEST_PARTS)
        assert not unknown, f"generateContent takes no {sorted(unknown)}"
        for name, value in payload.items():
            _valid(self._REQUEST_PARTS[name], value, f"the request's {name}")

    def answer(self, content: bytes) -> None:
        _gemini_json(gemini.GenerateContentResponse, content, "the answer")

    def stream(self, content: bytes) -> None:
        for event in _events(content):
            if "error" in event:
                continue  # Gemini ends a failed stream with a google.rpc error object
            _gemini_json(gemini.GenerateContentResponse, orjson.dumps(event), "a stream chunk")

    # The fields of a Model resource in the REST reference. The SDK's Model type renames
    # one (supportedGenerationMethods is its supported_actions) and has no baseModelId.
    _MODEL_FIELDS: Final = frozenset(
        {
            "name",
            "baseModelId",
            "version",
            "displayName",
            "description",
            "inputTokenLimit",
            "outputTokenLimit",
            "supportedGenerationMethods",
            "thinking",
            "temperature",
            "maxTemperature",
            "topP",
            "topK",
        }
    )

    def models_page(self, path: str, content: bytes) -> None:
        page = orjson.loads(content)
        assert set(page) <= {"models", "nextPageToken"}, page
        for entry in page["models"]:
            unknown = set(entry) - self._MODEL_FIELDS
            assert not unknown, f"a Gemini model has no field {sorted(unknown)}"
            as_sdk = {k: v for k, v in entry.items() if k != "baseModelId"}
            if "supportedGenerationMethods" in as_sdk:
                as_sdk["supportedActions"] = as_sdk.pop("supportedGenerationMethods")
            _gemini_json(gemini.Model, orjson.dumps(as_sdk), "a listed model")


def _gemini_json(kind: type[pydantic.BaseModel], content: bytes, what: str) -> None:
    try:
        kind.model_validate_json(content)
    except pydantic.ValidationError as error:
        raise AssertionError(f"{what} is not what google-genai accepts:\n{error}") from None


class BedrockWire:
    """Converse and the model lists, checked against botocore's Bedrock service models."""

    def request(self, url: str, body: bytes) -> None:
        path = urlsplit(url).path
        _, _, tail = path.partition("/model/")
        model_id, _, action = tail.rpartition("/")
        operation = _bedrock(
            "bedrock-runtime", {"converse": "Converse"}.get(action, "ConverseStream")
        )
        params = {**orjson.loads(body), "modelId": unquote(model_id)}
        report = ParamValidator().validate(params, operation.input_shape)
        assert not report.has_errors(), report.generate_report()

    def answer(self, content: bytes) -> None:
        _strictly(_bedrock("bedrock-runtime", "Converse").output_shape, orjson.loads(content))

    def stream(self, content: bytes) -> None:
        output = _bedrock("bedrock-runtime", "ConverseStream").output_shape
        assert isinstance(output, StructureShape)
        events = output.members["stream"]
        assert isinstance(events, StructureShape)
        buffer = EventStreamBuffer()
        buffer.add_data(content)
        for message in buffer:
            headers = message.headers
            name = headers.get(":event-type") or headers.get(":exception-type")
            assert name in events.members, f"ConverseStream has no event {name!r}"
            payload = orjson.loads(message.payload)
            # Bedrock pads each event with "p", random letters that hide the token sizes;
            # the service model does not list it.
            payload.pop("p", None)
            _strictly(events.members[name], payload)

    def models_page(self, path: str, content: bytes) -> None:
        operation = (
            "ListInferenceProfiles" if "inference-profiles" in path else "ListFoundationModels"
        )
        _strictly(_bedrock("bedrock", operation).output_shape, orjson.loads(content))


@cache
def _bedrock(service: str, operation: str) -> OperationModel:
    return botocore.session.get_session().get_service_model(service).operation_model(operation)


def _strictly(shape: Shape | None, value: Any, where: str = "$") -> None:
    """``value`` as the service model defines ``shape``: no unknown member, each of its type."""
    assert shape is not None
    check = _SHAPE_CHECKS.get(shape.type_name)
    assert check is not None, f"{where}: no check for {shape.type_name}"
    check(shape, value, where)


def _structure(shape: Shape, value: Any, where: str) -> None:
    assert isinstance(shape, StructureShape)
    if shape.is_document_type:
        return  # any JSON: tool input schemas and tool arguments
    assert isinstance(value, dict), f"{where}: {shape.name} is an object, not {value!r}"
    unknown = set(value) - set(shape.members)
    assert not unknown, f"{where}: {shape.name} has no member {sorted(unknown)}"
    missing = set(shape.required_members) - set(value)
    assert not missing, f"{where}: {shape.name} requires {sorted(missing)}"
    if shape.is_tagged_union:
        assert len(value) == 1, f"{where}: {shape.name} is a union; it holds one member"
    for name, member in value.items():
        _strictly(shape.members[name], member, f"{where}.{name}")


def _list(shape: Shape, value: Any, where: str) -> None:
    assert isinstance(value, list), f"{where}: a list, not {value!r}"
    for index, item in enumerate(value):
        _strictly(shape.member, item, f"{where}[{index}]")  # type: ignore[attr-defined]


def _map(shape: Shape, value: Any, where: str) -> None:
    assert isinstance(value, dict), f"{where}: a map, not {value!r}"
    for key, item in value.items():
        _strictly(shape.value, item, f"{where}.{key}")  # type: ignore[attr-defined]


def _scalar(*types: type) -> Callable[[Shape, Any, str], None]:
    def check(shape: Shape, value: Any, where: str) -> None:
        fits = isinstance(value, types) and (bool in types or not isinstance(value, bool))
        assert fits, f"{where}: {shape.type_name} expected, got {value!r}"
        enum = getattr(shape, "enum", None)
        if enum and isinstance(value, str):
            assert value in enum, f"{where}: {value!r} is not one of {enum}"

    return check


_SHAPE_CHECKS: Final[dict[str, Callable[[Shape, Any, str], None]]] = {
    "structure": _structure,
    "list": _list,
    "map": _map,
    "string": _scalar(str),
    "blob": _scalar(str),
    "timestamp": _scalar(str, int, float),
    "integer": _scalar(int),
    "long": _scalar(int),
    "float": _scalar(int, float),
    "double": _scalar(int, float),
    "boolean": _scalar(bool),
}

BY_KIND: Final[dict[str, WireCheck]] = {
    "openai": OpenAIWire(),
    "openai-compatible": OpenAIWire(),
    "xai": OpenAIWire(),
    "openrouter": OpenAIWire(),
    "deepseek": OpenAIWire(),
    "groq": GROQ,
    "anthropic": AnthropicWire(),
    "google": GeminiWire(),
    "bedrock": BedrockWire(),
}
