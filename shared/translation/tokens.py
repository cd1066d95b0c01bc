"""An honest estimate of a Messages request's input tokens, for ``/v1/messages/count_tokens``.

Only Anthropic (and Gemini, not used here) can count tokens exactly, and only for its
own tokenizer. For any other target the gateway answers with this estimate, and says so
in its documentation: about four characters of text per token (the usual rule of thumb
for English and code with BPE tokenizers), a few tokens of framing per message and per
tool, and a flat count per image. Expect it to be off by some tens of percent; it is
meant for "will this fit in the context window" decisions, not for billing.
"""

from __future__ import annotations

import math
from typing import Any, Final

import orjson

CHARS_PER_TOKEN: Final = 4
MESSAGE_OVERHEAD: Final = 4
TOOL_OVERHEAD: Final = 8
# Anthropic's guide puts an image at about width x height / 750 tokens and caps images
# near 1.15 megapixels: the cap is the honest guess when the size is unknown.
IMAGE_TOKENS: Final = 1600


def estimate_input_tokens(body: dict[str, Any]) -> int:
    """Estimated input tokens of an Anthropic Messages (or count_tokens) body."""
    characters = 0
    fixed = 0
    system = body.get("system")
    characters += _characters(system)
    for message in body.get("messages") or []:
        fixed += MESSAGE_OVERHEAD
        content = message.get("content") if isinstance(message, dict) else None
        characters += _characters(content)
        fixed += IMAGE_TOKENS * _images(content)
    for tool in body.get("tools") or []:
        fixed += TOOL_OVERHEAD
        characters += len(orjson.dumps(tool))
    return fixed + math.ceil(characters / CHARS_PER_TOKEN)


def _characters(content: object) -> int:
    if isinstance(content, str):
        return len(content)

    if not isinstance(content, list):
        return 0

    total = 0
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            total += len(str(block.get("text", "")))
        elif kind == "tool_use":
            total += len(str(block.get("name", ""))) + len(orjson.dumps(block.get("input") or {}))
        elif kind == "tool_result":
            total += _characters(block.get("content"))
        elif kind == "document":
            source = block.get("source") or {}
            # A PDF's base64 says little about its text; a third of its size is a guess.
            total += len(str(source.get("data", ""))) // 3
    return total


def _images(content: object) -> int:
    if not isinstance(content, list):
        return 0

    count = 0
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "image":
            count += 1
        elif block.get("type") == "tool_result":
            count += _images(block.get("content"))
    return count
