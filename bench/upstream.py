"""A fast stand-in provider for benchmarks: OpenAI's wire format, a fixed delay, no records.

The test emulator records every request and checks every field, which is what tests
need and what a benchmark must not pay for. This one is a bare ASGI app: it answers
``GET /v1/models`` and ``POST /v1/chat/completions`` (JSON, or SSE with a chosen number
of chunks and a final usage chunk) after ``--delay-ms``, for any bearer key.

    python bench/upstream.py --port 9100 --delay-ms 20 --chunks 20
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import orjson
import uvicorn

MODELS = {
    "object": "list",
    "data": [{"id": "bench-model", "object": "model", "created": 0, "owned_by": "bench"}],
}
USAGE = {"prompt_tokens": 12, "completion_tokens": 24, "total_tokens": 36}


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

        if b'"stream":true' not in body.replace(b" ", b""):
            await _respond(send, 200, self.completion, b"application/json")
            return

        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for _ in range(self.chunks):
            await send({"type": "http.response.body", "body": self.chunk, "more_body": True})
        await send({"type": "http.response.body", "body": self.last + self.usage})


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
