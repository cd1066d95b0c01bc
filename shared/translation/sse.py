"""Writing server-sent events for the client side of a translated stream."""

from __future__ import annotations

from typing import Any, Final

import orjson

# The end marker of an OpenAI chat stream; Anthropic and Responses streams have none.
OPENAI_DONE: Final = b"data: [DONE]\n\n"


def named_event(name: str, data: dict[str, Any]) -> bytes:
    """``event: <name>`` and one ``data:`` line: how Anthropic and Responses streams look."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def openai_chunk(chunk: dict[str, Any]) -> bytes:
    """One ``data:`` event of an OpenAI chat stream."""
    return b"data: " + orjson.dumps(chunk) + b"\n\n"
