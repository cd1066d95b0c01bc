"""An Anthropic Messages request (``POST /v1/messages``) as an OpenAI chat request.

What maps, and how:

| Anthropic | OpenAI chat |
|---|---|
| ``system`` (string or text blocks), ``system``-role messages | system message(s) |
| text, image (base64 or URL), PDF document (base64) blocks | text, ``image_url``, ``file`` parts |
| ``tool_use`` blocks | assistant ``tool_calls`` (several in one turn stay parallel) |
| ``tool_result`` blocks | ``tool`` messages, before the rest of the user turn; ``is_error`` prefixes the text with ``[error]``; images in a result follow in a user message |
| ``tools`` (custom ones) | function tools |
| ``tool_choice`` auto / any / tool / none, ``disable_parallel_tool_use`` | ``tool_choice`` auto / required / function / none, ``parallel_tool_calls: false`` |
| ``stop_sequences``, ``temperature``, ``top_p``, ``max_tokens`` | ``stop``, ``temperature``, ``top_p``, ``max_tokens`` |
| ``metadata.user_id`` | ``user`` |
| ``thinking`` (enabled, with a budget) / ``output_config.effort`` | ``reasoning_effort`` |
| ``output_config.format`` (JSON schema) | ``response_format`` json_schema |
| ``stream`` | ``stream`` with ``stream_options.include_usage`` |

Dropped on purpose, since no other provider has them: ``cache_control`` marks, thinking
and redacted-thinking blocks of earlier turns, ``service_tier``, ``inference_geo``,
``speed``. Refused with UnsupportedFeature naming the field: ``top_k``, server tools
(web search, code execution, computer use, …), file-id sources, MCP servers, containers.
An Anthropic target never sees this translation: the proxy passes Anthropic requests to
Anthropic through unchanged.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from shared.providers.base import UnsupportedFeature

# Thinking budgets at or below these map to the matching effort; beyond, "high".
_BUDGET_EFFORTS: Final = ((2048, "low"), (8192, "medium"))
_IGNORED: Final = frozenset(
    {"service_tier", "inference_geo", "speed", "cache_control", "diagnostics", "user_profile_id"}
)
_TRANSLATED: Final = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "stop_sequences",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "metadata",
        "stream",
        "thinking",
        "output_config",
    }
)


# Where each hub field the translation writes came from in the Messages request, so a
# refusal by the provider's adapter can name the caller's own field.
_ORIGINS: Final = {
    "max_tokens": "max_tokens",
    "stop": "stop_sequences",
    "tools": "tools",
    "tool_choice": "tool_choice",
    "parallel_tool_calls": "tool_choice.disable_parallel_tool_use",
    "user": "metadata.user_id",
    "reasoning_effort": "thinking",
    "response_format": "output_config.format",
}


def anthropic_field(hub_field: str) -> str:
    """The Messages request field behind a hub field an adapter refused.

    Top-level fields map back exactly; a path into ``messages`` or ``tools`` keeps the
    hub's indexes, which can differ from the caller's (the system prompt is message 0
    there, and tool results are messages of their own).
    """
    head, dot, rest = hub_field.partition(".")
    name, bracket, index = head.partition("[")
    origin = _ORIGINS.get(name, name)
    return origin + bracket + index + dot + rest


def anthropic_to_openai_request(body: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI chat body for a Messages body; UnsupportedFeature names what cannot go."""
    _refuse_untranslatable(body)
    chat: dict[str, Any] = {"model": body.get("model"), "messages": _messages(body)}
    if body.get("max_tokens") is not None:
        chat["max_tokens"] = body["max_tokens"]
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            chat[name] = body[name]
    stops = body.get("stop_sequences")
    if stops:
        if not isinstance(stops, list) or not all(isinstance(stop, str) for stop in stops):
            raise UnsupportedFeature(
                "stop_sequences", "'stop_sequences' must be an array of strings."
            )
        chat["stop"] = list(stops)
    _tools(body, chat)
    _reasoning_and_format(body, chat)
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        chat["user"] = metadata["user_id"]
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def _refuse_untranslatable(body: dict[str, Any]) -> None:
    for name, value in body.items():
        if name in _TRANSLATED or name in _IGNORED or value is None:
            continue

        raise UnsupportedFeature(name, f"'{name}' cannot be carried to this model's provider.")


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    chat: list[dict[str, Any]] = []
    system = _system_text(body.get("system"), "system")
    if system:
        chat.append({"role": "system", "content": system})

    messages = body.get("messages")
    if not isinstance(messages, list):
        raise UnsupportedFeature("messages", "'messages' must be an array.")

    for index, message in enumerate(messages):
        path = f"messages[{index}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role == "system":
            chat.append({"role": "system", "content": _system_text(message.get("content"), path)})
        elif role == "user":
            chat.extend(_user_turn(path, message.get("content")))
        elif role == "assistant":
            chat.append(_assistant_turn(path, message.get("content")))
        else:
            raise UnsupportedFeature(f"{path}.role", "a message role is user or assistant.")
    return chat


def _system_text(system: object, path: str) -> str:
    if system is None or isinstance(system, str):
        return system or ""

    if isinstance(system, list):
        texts = []
        for index, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text":
                raise UnsupportedFeature(f"{path}[{index}]", "system blocks must be text.")
            texts.append(str(block.get("text", "")))
        return "\n".join(texts)

    raise UnsupportedFeature(path, "'system' must be a string or an array of text blocks.")


def _blocks(path: str, content: object) -> list[tuple[str, dict[str, Any]]]:
    if isinstance(content, str):
        return [(f"{path}.content", {"type": "text", "text": content})]

    if not isinstance(content, list):
        raise UnsupportedFeature(f"{path}.content", "'content' must be a string or blocks.")

    found = []
    for index, block in enumerate(content):
        block_path = f"{path}.content[{index}]"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise UnsupportedFeature(block_path, "each content block needs a 'type'.")
        found.append((block_path, block))
    return found


def _user_turn(path: str, content: object) -> list[dict[str, Any]]:
    """Tool results first (OpenAI wants them right after the calls), then the rest."""
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block_path, block in _blocks(path, content):
        kind = block["type"]
        if kind == "tool_result":
            message, images = _tool_result(block_path, block)
            tool_messages.append(message)
            parts.extend(images)
        elif kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "image":
            parts.append(_image_part(block_path, block))
        elif kind == "document":
            parts.append(_document_part(block_path, block))
        else:
            raise UnsupportedFeature(block_path, f"'{kind}' blocks cannot be translated.")

    turn = list(tool_messages)
    if parts:
        only_text = all(part["type"] == "text" for part in parts)
        content_out: Any = "\n".join(p["text"] for p in parts) if only_text else parts
        turn.append({"role": "user", "content": content_out})
    return turn


def _image_part(path: str, block: dict[str, Any]) -> dict[str, Any]:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64" and isinstance(source, dict):
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif kind == "url" and isinstance(source, dict):
        url = str(source.get("url"))
    else:
        raise UnsupportedFeature(f"{path}.source", "images must be base64 or a URL.")
    return {"type": "image_url", "image_url": {"url": url}}


def _document_part(path: str, block: dict[str, Any]) -> dict[str, Any]:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "text" and isinstance(source, dict):
        return {"type": "text", "text": str(source.get("data", ""))}

    if (
        kind == "base64"
        and isinstance(source, dict)
        and source.get("media_type") == "application/pdf"
    ):
        title = block.get("title") if isinstance(block.get("title"), str) else "document.pdf"
        return {
            "type": "file",
            "file": {
                "filename": title,
                "file_data": f"data:application/pdf;base64,{source.get('data')}",
            },
        }

    raise UnsupportedFeature(f"{path}.source", "documents must be plain text or base64 PDF.")


def _tool_result(path: str, block: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    content = block.get("content")
    if content is not None:
        for inner_path, inner in _blocks(path, content):
            if inner["type"] == "text":
                texts.append(str(inner.get("text", "")))
            elif inner["type"] == "image":
                images.append(_image_part(inner_path, inner))
            else:
                raise UnsupportedFeature(inner_path, "tool results carry text and images only.")
    text = "\n".join(texts)
    if block.get("is_error"):
        text = f"[error] {text}"
    message = {"role": "tool", "tool_call_id": str(block.get("tool_use_id")), "content": text}
    return message, images


def _assistant_turn(path: str, content: object) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block_path, block in _blocks(path, content):
        kind = block["type"]
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            calls.append(
                {
                    "id": str(block.get("id")),
                    "type": "function",
                    "function": {
                        "name": str(block.get("name")),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise UnsupportedFeature(block_path, f"'{kind}' blocks cannot be translated.")

    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tools(body: dict[str, Any], chat: dict[str, Any]) -> None:
    tools = body.get("tools") or []
    converted = []
    for index, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or kind not in (None, "custom"):
            raise UnsupportedFeature(
                f"tools[{index}]", f"the server tool {kind!r} exists only on Anthropic."
            )

        function: dict[str, Any] = {
            "name": tool.get("name"),
            "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
        }
        if tool.get("description"):
            function["description"] = tool["description"]
        converted.append({"type": "function", "function": function})
    if converted:
        chat["tools"] = converted

    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        return

    kind = choice.get("type")
    mapped: Any = {"auto": "auto", "any": "required", "none": "none"}.get(str(kind))
    if kind == "tool":
        mapped = {"type": "function", "function": {"name": choice.get("name")}}
    if mapped is None:
        raise UnsupportedFeature("tool_choice", f"unknown tool_choice type {kind!r}.")

    # OpenAI refuses a tool_choice without tools; without tools there is nothing to choose.
    if not converted:
        return

    chat["tool_choice"] = mapped
    if choice.get("disable_parallel_tool_use"):
        chat["parallel_tool_calls"] = False


def _reasoning_and_format(body: dict[str, Any], chat: dict[str, Any]) -> None:
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        effort = "high"
        for limit, name in _BUDGET_EFFORTS:
            if isinstance(budget, int) and budget <= limit:
                effort = name
                break
        chat["reasoning_effort"] = effort
    elif isinstance(thinking, dict) and thinking.get("type") == "adaptive":
        chat["reasoning_effort"] = "medium"

    output = body.get("output_config")
    if not isinstance(output, dict):
        return

    if output.get("effort") is not None:
        chat["reasoning_effort"] = "xhigh" if output["effort"] == "max" else output["effort"]
    output_format = output.get("format")
    if isinstance(output_format, dict) and output_format.get("type") == "json_schema":
        chat["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": output_format.get("schema") or {}},
        }
