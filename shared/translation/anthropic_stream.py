"""OpenAI chat chunks, as they arrive, encoded as Anthropic's Messages SSE stream.

Event order, as Anthropic documents it::

    message_start, ping
    per content block: content_block_start, content_block_delta…, content_block_stop
    message_delta (stop_reason, usage), message_stop

Text deltas become ``text_delta`` in a text block; each tool call opens a ``tool_use``
block whose argument fragments are ``input_json_delta`` events. OpenAI sends the finish
reason before the usage chunk, so ``message_delta`` waits for :meth:`finish`, called when
the upstream stream has ended. A failure midway ends the stream with an ``error`` event.

    encoder = AnthropicStreamEncoder(model="team/claude")
    for chunk in decoder.feed(data):
        send(encoder.feed(chunk))
    send(encoder.finish())          # or encoder.fail(failure)
"""

from __future__ import annotations

from typing import Any

from shared.providers.base import UpstreamFailure, Usage
from shared.providers.openai_compatible import usage_of
from shared.translation.anthropic_response import anthropic_usage, message_id, stop_reason
from shared.translation.errors import anthropic_error_event
from shared.translation.sse import named_event


class AnthropicStreamEncoder:
    """Turns one answer's OpenAI chunks into Anthropic SSE bytes."""

    def __init__(self, *, model: str, input_tokens: int = 0) -> None:
        """``input_tokens`` goes in ``message_start`` (an estimate; message_delta has the count)."""
        self._model = model
        self._input_hint = input_tokens
        self._started = False
        self._ended = False
        self._open: tuple[str, int] | None = None  # ("text" | "tool", block index)
        self._next_block = 0
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool call index -> block index
        self._finish: object = None
        self._usage: Usage | None = None

    def feed(self, chunk: dict[str, Any]) -> bytes:
        if self._ended:
            return b""

        out = [self._start(chunk.get("id"))]
        usage = usage_of(chunk)
        if usage is not None:
            self._usage = usage
        for choice in chunk.get("choices") or []:
            # An Anthropic message has one answer: further choices are not shown.
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            out.extend(self._delta(choice.get("delta") or {}))
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return b"".join(out)

    def finish(self) -> bytes:
        """Close the open block and end the message with its stop reason and usage."""
        if self._ended:
            return b""

        out = [self._start(None), self._close()]
        usage = anthropic_usage(self._usage)
        out.append(
            named_event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason(self._finish), "stop_sequence": None},
                    "usage": {
                        "input_tokens": usage["input_tokens"],
                        "output_tokens": usage["output_tokens"],
                        "cache_read_input_tokens": usage["cache_read_input_tokens"],
                    },
                },
            )
        )
        out.append(named_event("message_stop", {"type": "message_stop"}))
        self._ended = True
        return b"".join(out)

    def fail(self, failure: UpstreamFailure, provider: str | None = None) -> bytes:
        """End the stream with Anthropic's ``error`` event, as Anthropic does midway."""
        if self._ended:
            return b""

        self._ended = True
        return named_event("error", anthropic_error_event(failure, provider))

    @property
    def usage(self) -> Usage | None:
        return self._usage

    def _start(self, chunk_id: object) -> bytes:
        if self._started:
            return b""

        self._started = True
        message: dict[str, Any] = {
            "id": message_id(chunk_id),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._input_hint, "output_tokens": 0},
        }
        return named_event("message_start", {"type": "message_start", "message": message}) + (
            named_event("ping", {"type": "ping"})
        )

    def _delta(self, delta: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self._open is None or self._open[0] != "text":
                out.append(self._close())
                out.append(self._open_block("text", {"type": "text", "text": ""}))
            out.append(
                self._block_delta({"type": "text_delta", "text": text}, self._next_block - 1)
            )
        for call in delta.get("tool_calls") or []:
            out.extend(self._tool_delta(call))
        return out

    def _tool_delta(self, call: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        index = int(call.get("index", 0))
        function = call.get("function") or {}
        if index not in self._tool_blocks:
            out.append(self._close())
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{index}",
                "name": function.get("name") or "",
                "input": {},
            }
            out.append(self._open_block("tool", block))
            self._tool_blocks[index] = self._next_block - 1
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            # A late fragment of an earlier call still names its own block, which is
            # how the SDKs accumulate it.
            out.append(
                self._block_delta(
                    {"type": "input_json_delta", "partial_json": arguments},
                    self._tool_blocks[index],
                )
            )
        return out

    def _open_block(self, kind: str, block: dict[str, Any]) -> bytes:
        index = self._next_block
        self._next_block += 1
        self._open = (kind, index)
        return named_event(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": block},
        )

    def _block_delta(self, delta: dict[str, Any], index: int) -> bytes:
        return named_event(
            "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        )

    def _close(self) -> bytes:
        if self._open is None:
            return b""

        index = self._open[1]
        self._open = None
        return named_event("content_block_stop", {"type": "content_block_stop", "index": index})
