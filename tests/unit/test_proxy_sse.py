"""Relaying server-sent events: whole events, as they complete, usage read on the side."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from services.proxy.sse import relay_events

CHUNK = b'data: {"choices":[{"delta":{"content":"hi"}}],"usage":null}\n\n'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}\n\n'
DONE = b"data: [DONE]\n\n"


async def pieces(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def collect(stream: AsyncIterator[bytes]) -> list[bytes]:
    return [event async for event in stream]


async def test_events_split_across_reads_come_out_whole() -> None:
    """An event torn across network reads is passed on once it is complete, byte for byte."""
    seen: list[dict[str, Any]] = []
    raw = CHUNK + USAGE + DONE
    torn = [raw[i : i + 7] for i in range(0, len(raw), 7)]

    out = await collect(relay_events(pieces(*torn), seen.append, hide_usage_only_events=False))

    assert out == [CHUNK, USAGE, DONE]
    assert seen[0]["usage"]["completion_tokens"] == 5


async def test_usage_chunk_the_client_did_not_ask_for_is_held_back() -> None:
    """When the proxy asked for usage on the client's behalf, the usage-only event is read and dropped."""
    seen: list[dict[str, Any]] = []

    out = await collect(
        relay_events(pieces(CHUNK, USAGE, DONE), seen.append, hide_usage_only_events=True)
    )

    assert out == [CHUNK, DONE]
    assert seen and seen[0]["usage"]["prompt_tokens"] == 3
