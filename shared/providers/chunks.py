"""Building OpenAI chat completions and ``chat.completion.chunk`` dicts, the hub's output side.

Adapters that translate a provider's answer build it here, so every answer has the same
shape whatever the provider: one id, ``created`` and ``model`` per answer, tool calls with
stable indexes, the finish reason on the last choice chunk, usage in OpenAI's fields.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from shared.providers.base import Usage

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage_fields(usage: Usage) -> dict[str, Any]:
    """A Usage in OpenAI's ``usage`` object."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any] | str

    def as_openai(self) -> dict[str, Any]:
        arguments = (
            self.arguments
            if isinstance(self.arguments, str)
            else orjson.dumps(self.arguments).decode()
        )
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": arguments},
        }


@dataclass(slots=True)
class Choice:
    """What one choice of an answer said."""

    index: int = 0
    text: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: FinishReason = "stop"

    def as_openai(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": self.text if self.text or not self.tool_calls else None,
        }
        if self.reasoning:
            message["reasoning_content"] = self.reasoning
        if self.tool_calls:
            message["tool_calls"] = [call.as_openai() for call in self.tool_calls]
        return {
            "index": self.index,
            "message": message,
            "finish_reason": self.finish_reason,
            "logprobs": None,
        }


def completion(
    *, model: str, choices: list[Choice], usage: Usage | None, answer_id: str | None = None
) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` dict."""
    body: dict[str, Any] = {
        "id": answer_id or new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice.as_openai() for choice in choices],
    }
    if usage is not None:
        body["usage"] = usage_fields(usage)
    return body


class ChunkWriter:
    """Makes the chunks of one streamed answer; it numbers tool calls per choice."""

    def __init__(self, model: str, *, answer_id: str | None = None) -> None:
        self.id = answer_id or new_id("chatcmpl")
        self.model = model
        self.created = int(time.time())
        self._tool_counts: dict[int, int] = {}
        self._started: set[int] = set()

    def start(self, choice: int = 0) -> list[dict[str, Any]]:
        """The role chunk OpenAI sends first, once per choice."""
        if choice in self._started:
            return []

        self._started.add(choice)
        return [self._chunk({"role": "assistant", "content": ""}, choice)]

    def text(self, text: str, choice: int = 0) -> list[dict[str, Any]]:
        if not text:
            return []

        return [*self.start(choice), self._chunk({"content": text}, choice)]

    def reasoning(self, text: str, choice: int = 0) -> list[dict[str, Any]]:
        # Not part of OpenAI's schema: the field DeepSeek, vLLM and OpenRouter use for it.
        if not text:
            return []

        return [*self.start(choice), self._chunk({"reasoning_content": text}, choice)]

    def tool_call(
        self, call_id: str, name: str, arguments: str = "", choice: int = 0
    ) -> tuple[int, list[dict[str, Any]]]:
        """The chunk opening a tool call, and the index its later argument deltas use."""
        index = self._tool_counts.get(choice, 0)
        self._tool_counts[choice] = index + 1
        delta = {
            "tool_calls": [
                {
                    "index": index,
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            ]
        }
        return index, [*self.start(choice), self._chunk(delta, choice)]

    def tool_arguments(self, index: int, fragment: str, choice: int = 0) -> list[dict[str, Any]]:
        if not fragment:
            return []

        delta = {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}
        return [self._chunk(delta, choice)]

    def finish(self, reason: FinishReason, choice: int = 0) -> list[dict[str, Any]]:
        return [*self.start(choice), self._chunk({}, choice, finish_reason=reason)]

    def usage(self, usage: Usage) -> dict[str, Any]:
        return {**self._base(), "choices": [], "usage": usage_fields(usage)}

    def _chunk(
        self, delta: dict[str, Any], choice: int, *, finish_reason: str | None = None
    ) -> dict[str, Any]:
        return {
            **self._base(),
            "choices": [
                {"index": choice, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    def _base(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }
