"""A fast stand-in provider for benchmarks: OpenAI's and Anthropic's wire formats, no records.

The test emulator records every request and checks every field, which is what tests
need and what a benchmark must not pay for. This one is a bare ASGI app: it answers
``POST /v1/chat/completions`` in OpenAI's format and ``POST /v1/messages`` in
Anthropic's (JSON, or SSE with a chosen number of chunks and the final usage) after
``--delay-ms``, for any key, and ``GET /v1/models`` with a page both formats accept.

    python bench/upstream.py --port 9100 --delay-ms 20 --chunks 20
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import orjson
import uvicorn

# One page that reads as OpenAI's model list and as Anthropic's.
MODELS = {
    "object": "list",
    "data": [
        {
            "id": "bench-model",
            "object": "model",
            "created": 0,
            "owned_by": "bench",
            "type": "model",
            "display_name": "Bench model",
            "created_at": "2025-01-01T00:00:00Z",
        }
    ],
    "has_more": False,
    "first_id": "bench-model",
    "last_id": "bench-model",
}
USAGE = {"prompt_tokens": 12, "completion_tokens": 24, "total_tokens": 36}
WORDS = 24


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class AnthropicAnswers:
    """The same answer in Anthropic's Messages format, whole and as a stream."""

    def __init__(self, chunks: int) -> None:
        usage = {"input_tokens": 12, "output_tokens": WORDS}
        self.message = orjson.dumps(
            {
                "id": "msg_bench",
                "type": "message",
                "role": "assistant",
                "model": "bench-model",
                "content": [{"type": "text", "text": "word " * WORDS}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": usage,
            }
        )
        start = {
            "type": "message_start",
            "message": {
                "id": "msg_bench",
                "type": "message",
                "role": "assistant",
                "model": "bench-model",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 12, "output_tokens": 1},
            },
        }
        self.opening = _event("message_start", start) + _event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        self.delta = _event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "word "},
            },
        )
        self.chunks = chunks
        self.closing = (
            _event("content_block_stop", {"type": "content_block_stop", "index": 0})
            + _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": WORDS},
                },
            )
            + _event("message_stop", {"type": "message_stop"})
        )


class Upstream:
    def __init__(self, delay_ms: float, chunks: int) -> None:
        self.delay = delay_ms / 1000
        self.chunks = chunks
        self.completion = orjson.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": 0,
                "model": "bench-model",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "word " * 24},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": USAGE,
            }
        )
        chunk = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "bench-model",
            "choices": [{"index": 0, "delta": {"content": "word "}, "finish_reason": None}],
        }
        self.chunk = b"data: " + orjson.dumps(chunk) + b"\n\n"
        last = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        self.last = b"data: " + orjson.dumps(last) + b"\n\n"
        usage = {**chunk, "choices": [], "usage": USAGE}
        self.usage = b"data: " + orjson.dumps(usage) + b"\n\ndata: [DONE]\n\n"
        self.anthropic = AnthropicAnswers(chunks)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return

        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break

        if scope["path"].endswith("/models"):
            await _respond(send, 200, orjson.dumps(MODELS), b"application/json")
            return

        if self.delay:
            await asyncio.sleep(self.delay)

        streamed = b'"stream":true' in body.replace(b" ", b"")
        if scope["path"].endswith("/messages"):
            answers = self.anthropic
            if not streamed:
                await _respond(send, 200, answers.message, b"application/json")
                return
            await _stream(send, answers.opening, answers.delta, answers.chunks, answers.closing)
            return

        if not streamed:
            await _respond(send, 200, self.completion, b"application/json")
            return

        await _stream(send, b"", self.chunk, self.chunks, self.last + self.usage)


async def _stream(send: Any, opening: bytes, piece: bytes, pieces: int, closing: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )
    if opening:
        await send({"type": "http.response.body", "body": opening, "more_body": True})
    for _ in range(pieces):
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": closing})


async def _respond(send: Any, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--chunks", type=int, default=20)
    args = parser.parse_args()
    uvicorn.run(
        Upstream(args.delay_ms, args.chunks),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
