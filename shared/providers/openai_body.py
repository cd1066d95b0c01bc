"""Reading an OpenAI chat request, the hub format, on its way to a provider with another format.

Adapters that translate (Anthropic, Gemini, Bedrock) share these steps: refuse fields the
target cannot honour, naming them; walk the messages and their content parts; decode
``data:`` image URLs; find the tool name behind a ``tool_call_id``. Every refusal is an
:class:`UnsupportedFeature` whose ``field`` points into the OpenAI request
(``messages[3].content[1]``), which is the caller's request or the translation of it.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

from shared.providers.base import UnsupportedFeature

# Fields no provider needs in order to answer: bookkeeping for OpenAI's own platform.
# They are dropped on the way to another provider rather than refused.
BOOKKEEPING_FIELDS: Final = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "store",
        "metadata",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
        "user",
        "parallel_tool_calls",
    }
)

# A value that asks for nothing: the field may be present with it on any target.
_NEUTRAL_VALUES: Final[dict[str, tuple[Any, ...]]] = {
    "n": (None, 1),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "prediction": (None,),
    "seed": (None,),
    "web_search_options": (None,),
    "functions": (None, []),
    "function_call": (None,),
    "verbosity": (None,),
    "reasoning_effort": (None,),
    "response_format": (None, {"type": "text"}),
    "tools": (None, []),
    "tool_choice": (None,),
    "stop": (None, [], ""),
    "temperature": (None,),
    "top_p": (None,),
    "max_tokens": (None,),
    "max_completion_tokens": (None,),
}


def refuse_unsupported(body: dict[str, Any], supported: Collection[str], target: str) -> None:
    """Raise for the first field the target cannot carry that asks for something."""
    for name, value in body.items():
        if name in BOOKKEEPING_FIELDS or name in supported:
            continue

        if value in _NEUTRAL_VALUES.get(name, (None,)):
            continue

        raise UnsupportedFeature(name, f"'{name}' is not supported by {target} models.")


def max_output_tokens(body: dict[str, Any]) -> int | None:
    """``max_completion_tokens``, or the older ``max_tokens``, if either is set."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue

        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UnsupportedFeature(name, f"'{name}' must be a positive integer.")

        return value

    return None


def stop_sequences(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None or stop == "":
        return []

    if isinstance(stop, str):
        return [stop]

    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return list(stop)

    raise UnsupportedFeature("stop", "'stop' must be a string or an array of strings.")


@dataclass(frozen=True, slots=True)
class Message:
    """One message of the request, with where it sits for error messages."""

    index: int
    role: str
    raw: dict[str, Any]

    @property
    def field(self) -> str:
        return f"messages[{self.index}]"


def messages(body: dict[str, Any]) -> Iterator[Message]:
    raw = body.get("messages")
    if not isinstance(raw, list):
        raise UnsupportedFeature("messages", "'messages' must be an array.")

    for index, message in enumerate(raw):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise UnsupportedFeature(f"messages[{index}]", "each message needs a string 'role'.")

        yield Message(index, message["role"], message)


def content_parts(message: Message) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each content part as (its field path, the part); a string content is one text part."""
    content = message.raw.get("content")
    if content is None:
        return

    if isinstance(content, str):
        if content:
            yield f"{message.field}.content", {"type": "text", "text": content}
        return

    if not isinstance(content, list):
        raise UnsupportedFeature(
            f"{message.field}.content", "'content' must be a string or an array of parts."
        )

    for index, part in enumerate(content):
        path = f"{message.field}.content[{index}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise UnsupportedFeature(path, "each content part needs a string 'type'.")

        yield path, part


def text_of(message: Message) -> str:
    """The text parts of a message joined; refuses parts that are not text."""
    texts: list[str] = []
    for path, part in content_parts(message):
        if part["type"] != "text" or not isinstance(part.get("text"), str):
            raise UnsupportedFeature(
                path, f"only text content is supported in a '{message.role}' message."
            )
        texts.append(part["text"])
    return "\n".join(texts)


@dataclass(frozen=True, slots=True)
class Image:
    """An image part: inline bytes (base64 as sent) or a URL to fetch."""

    media_type: str
    data: str | None = None
    url: str | None = None


def image_of(path: str, part: dict[str, Any]) -> Image:
    """The image of an ``image_url`` part: a ``data:`` URL decoded, or a plain URL kept."""
    image_url = part.get("image_url")
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url:
        raise UnsupportedFeature(f"{path}.image_url", "an image part needs 'image_url.url'.")

    if url.startswith("data:"):
        return _data_url(f"{path}.image_url", url)

    return Image(media_type=guess_media_type(url), url=url)


def guess_media_type(url: str) -> str:
    """The image type a URL's file name suggests; JPEG when it says nothing."""
    guessed, _ = mimetypes.guess_type(urlsplit(url).path)
    return guessed if guessed and guessed.startswith("image/") else "image/jpeg"


def _data_url(path: str, url: str) -> Image:
    header, comma, data = url.partition(",")
    if not comma or not header.endswith(";base64"):
        raise UnsupportedFeature(path, "a data URL image must be base64 encoded.")

    media_type = header.removeprefix("data:").removesuffix(";base64") or "image/png"
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise UnsupportedFeature(path, "the data URL image is not valid base64.") from None

    return Image(media_type=media_type, data=data)


def tool_arguments(path: str, arguments: object) -> dict[str, Any]:
    """A tool call's ``arguments`` string as the JSON object providers want."""
    if arguments is None or arguments == "":
        return {}

    if isinstance(arguments, dict):
        return arguments

    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) else None
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise UnsupportedFeature(path, "tool call arguments must be a JSON object.")

    return parsed


def tool_calls(message: Message) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(field path, id, name, arguments) of each tool call of an assistant message."""
    calls = message.raw.get("tool_calls") or []
    if not isinstance(calls, list):
        raise UnsupportedFeature(f"{message.field}.tool_calls", "'tool_calls' must be an array.")

    for index, call in enumerate(calls):
        path = f"{message.field}.tool_calls[{index}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise UnsupportedFeature(path, "a tool call needs a function with a name.")

        call_id = call.get("id") if isinstance(call.get("id"), str) else f"call_{index}"
        arguments = tool_arguments(f"{path}.function.arguments", function.get("arguments"))
        yield path, call_id, function["name"], arguments


def tool_names_by_call_id(body: dict[str, Any]) -> dict[str, str]:
    """Which function each earlier tool call id named: tool results say only the id."""
    names: dict[str, str] = {}
    for message in messages(body):
        if message.role == "assistant":
            for _, call_id, name, _ in tool_calls(message):
                names[call_id] = name
    return names


@dataclass(frozen=True, slots=True)
class FunctionTool:
    name: str
    description: str | None
    parameters: dict[str, Any]


def function_tools(body: dict[str, Any]) -> list[FunctionTool]:
    """The request's function tools; any other kind of tool is refused."""
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise UnsupportedFeature("tools", "'tools' must be an array.")

    found: list[FunctionTool] = []
    for index, tool in enumerate(tools):
        path = f"tools[{index}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise UnsupportedFeature(
                f"{path}.type", f"only function tools can be translated, not {kind!r}."
            )

        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise UnsupportedFeature(f"{path}.function", "a function tool needs a name.")

        parameters = function.get("parameters")
        description = function.get("description")
        found.append(
            FunctionTool(
                name=function["name"],
                description=description if isinstance(description, str) else None,
                parameters=parameters
                if isinstance(parameters, dict)
                else {"type": "object", "properties": {}},
            )
        )
    return found


def tool_choice(body: dict[str, Any]) -> tuple[str, str | None] | None:
    """("auto" | "none" | "required" | "function", function name) or None when unset."""
    choice = body.get("tool_choice")
    if choice is None:
        return None

    if choice in ("auto", "none", "required"):
        return str(choice), None

    function = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return "function", function["name"]

    raise UnsupportedFeature(
        "tool_choice",
        "'tool_choice' must be 'auto', 'none', 'required' or a named function.",
    )


def json_schema_format(body: dict[str, Any]) -> tuple[str, dict[str, Any] | None] | None:
    """("json_schema", schema) or ("json_object", None) for a JSON response format."""
    response_format = body.get("response_format")
    if response_format is None:
        return None

    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None

    if kind == "json_object":
        return "json_object", None

    spec = response_format.get("json_schema") if isinstance(response_format, dict) else None
    if kind == "json_schema" and isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
        return "json_schema", spec["schema"]

    raise UnsupportedFeature(
        "response_format", "'response_format' must be text, json_object or json_schema."
    )


def append_turn(
    turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]], *, key: str = "content"
) -> None:
    """Add blocks to a conversation whose provider wants roles to alternate.

    Consecutive hub messages of one role (a user message, then tool results, which these
    providers carry as user content) become one turn; an empty message adds nothing.
    """
    if not blocks:
        return

    if turns and turns[-1]["role"] == role:
        turns[-1][key].extend(blocks)
    else:
        turns.append({"role": role, key: blocks})
