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


async def test_events_split_across_reads_come_out_whole_and_unchanged() -> None:
    """Events torn across network reads are passed on once complete, and the bytes add up to the original."""
    seen: list[dict[str, Any]] = []
    raw = CHUNK + USAGE + DONE
    torn = [raw[i : i + 7] for i in range(0, len(raw), 7)]

    out = await collect(relay_events(pieces(*torn), seen.append, hide_usage_only_events=False))

    assert b"".join(out) == raw
    assert all(piece.endswith(b"\n\n") for piece in out)
    assert seen[0]["usage"]["completion_tokens"] == 5


async def test_one_read_with_many_events_is_one_write() -> None:
    """A read carrying a thousand whole events is relayed in one piece, not a thousand."""
    raw = CHUNK * 1000 + DONE

    out = await collect(relay_events(pieces(raw), lambda _: None, hide_usage_only_events=True))

    assert out == [raw]


async def test_usage_chunk_the_client_did_not_ask_for_is_held_back() -> None:
    """When the proxy asked for usage on the client's behalf, the usage-only event is read and dropped."""
    seen: list[dict[str, Any]] = []

    out = await collect(
        relay_events(pieces(CHUNK, USAGE + DONE), seen.append, hide_usage_only_events=True)
    )

    assert b"".join(out) == CHUNK + DONE
    assert seen and seen[0]["usage"]["prompt_tokens"] == 3


async def test_crlf_separated_events_are_understood() -> None:
    """Providers that end events with CRLF pairs are split and read the same way."""
    seen: list[dict[str, Any]] = []
    crlf = USAGE.replace(b"\n\n", b"\r\n\r\n")

    out = await collect(relay_events(pieces(crlf, DONE), seen.append, hide_usage_only_events=False))

    assert b"".join(out) == crlf + DONE
    assert seen
