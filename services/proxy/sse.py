"""Relaying a server-sent event stream as it arrives, reading usage on the way.

What one read from the provider brings is passed on in one write, as the provider's
own bytes, as soon as it holds complete events; only a trailing partial event waits
for the next read. Events are looked at one by one only when the read mentions a
usage figure: then the usage is taken, and a usage-only event the client did not ask
for (the proxy asked on its behalf) is held back. The work per read is linear in its
size, however many events it carries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

_USAGE = b'"usage"'
_NO_USAGE = (b'"usage":null', b'"usage": null')


def _complete_part(buffer: bytes) -> int:
    """How many leading bytes of the buffer are whole events."""
    lf = buffer.rfind(b"\n\n")
    crlf = buffer.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf != -1 else 0, crlf + 4 if crlf != -1 else 0)


def _mentions_usage(block: bytes) -> bool:
    return block.count(_USAGE) > sum(block.count(empty) for empty in _NO_USAGE)


def _events(block: bytes) -> list[bytes]:
    """Split whole events, each keeping its own separator."""
    events: list[bytes] = []
    start = 0
    while start < len(block):
        lf = block.find(b"\n\n", start)
        crlf = block.find(b"\r\n\r\n", start)
        candidates = [i + 2 for i in (lf,) if i != -1] + [i + 4 for i in (crlf,) if i != -1]
        end = min(candidates) if candidates else len(block)
        events.append(block[start:end])
        start = end
    return events


def _payload(event: bytes) -> dict[str, Any] | None:
    for line in event.splitlines():
        if line.startswith(b"data:"):
            data = line[5:].strip()
            if data and data != b"[DONE]":
                try:
                    parsed = orjson.loads(data)
                except orjson.JSONDecodeError:
                    return None
                return parsed if isinstance(parsed, dict) else None
    return None


def _with_usage_read(
    block: bytes, on_usage: Callable[[dict[str, Any]], None], hide_usage_only_events: bool
) -> bytes:
    kept: list[bytes] = []
    for event in _events(block):
        if _mentions_usage(event):
            payload = _payload(event)
            if payload is not None and payload.get("usage"):
                on_usage(payload)
                if hide_usage_only_events and not payload.get("choices"):
                    continue
        kept.append(event)
    return b"".join(kept)


async def relay_events(
    chunks: AsyncIterator[bytes],
    on_usage: Callable[[dict[str, Any]], None],
    *,
    hide_usage_only_events: bool,
) -> AsyncIterator[bytes]:
    pending = b""
    async for chunk in chunks:
        buffer = pending + chunk if pending else chunk
        end = _complete_part(buffer)
        block, pending = buffer[:end], buffer[end:]
        if not block:
            continue

        if _mentions_usage(block):
            block = _with_usage_read(block, on_usage, hide_usage_only_events)
        if block:
            yield block

    if pending:
        yield pending
