"""An OpenAI chat completion as an Anthropic Message, and the reasons that end an answer.

Finish reasons map both ways: this module turns OpenAI's into Anthropic's stop reasons
for the Anthropic door; :mod:`shared.providers.anthropic_wire` turns Anthropic's into
OpenAI's for the Anthropic adapter.

Usage: Anthropic counts cache reads apart from ``input_tokens``, OpenAI inside
``prompt_tokens``; the cached count moves to ``cache_read_input_tokens``. Reasoning text
(``reasoning_content`` of some providers) is not shown: an Anthropic thinking block needs
a signature only Anthropic can make.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

import orjson

from shared.providers.base import Usage
from shared.providers.openai_compatible import usage_of

FINISH_TO_STOP: Final[dict[str, str]] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(finish_reason: object) -> str:
    return FINISH_TO_STOP.get(str(finish_reason), "end_turn")


def message_id(chat_id: object) -> str:
    if isinstance(chat_id, str) and chat_id.startswith("msg_"):
        return chat_id

    return f"msg_{uuid.uuid4().hex[:24]}"


def anthropic_usage(usage: Usage | None) -> dict[str, Any]:
    """A Usage as Anthropic's usage object (input without the cached part)."""
    usage = usage or Usage()
    return {
        "input_tokens": max(usage.input_tokens - usage.cached_input_tokens, 0),
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_input_tokens,
    }


def tool_input(arguments: object) -> dict[str, Any]:
    """A tool call's arguments string as the object Anthropic wants.

    A model that wrote arguments that are not a JSON object still gets them across, as
    the one property ``_raw_arguments``, rather than silently losing them.
    """
    if isinstance(arguments, dict):
        return arguments

    if not arguments:
        return {}

    try:
        parsed = orjson.loads(str(arguments))
    except orjson.JSONDecodeError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"_raw_arguments": str(arguments)}


def openai_to_anthropic_response(completion: dict[str, Any], *, model: str) -> dict[str, Any]:
    """The Message for a chat completion; ``model`` is the name the caller asked for."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    elif isinstance(text, list):
        joined = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        if joined:
            content.append({"type": "text", "text": joined})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": function.get("name", ""),
                "input": tool_input(function.get("arguments")),
            }
        )
    return {
        "id": message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason")),
        "stop_sequence": None,
        "usage": anthropic_usage(usage_of(completion)),
    }
