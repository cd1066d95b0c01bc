"""Relaying a server-sent event stream event by event, reading usage on the way.

Events are passed on as the bytes the provider sent, the moment each is complete; the
only events ever parsed are those that mention usage. When the proxy itself asked the
provider for a usage chunk the client did not request, that chunk is held back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

_SEPARATORS = (b"\r\n\r\n", b"\n\n")


def _split_event(buffer: bytes) -> tuple[bytes, bytes] | None:
    """The first complete event (with its separator) and the rest, or None."""
    best: tuple[int, int] | None = None
    for separator in _SEPARATORS:
        index = buffer.find(separator)
        if index != -1 and (best is None or index < best[0]):
            best = (index, len(separator))
    if best is None:
        return None

    end = best[0] + best[1]
    return buffer[:end], buffer[end:]


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


async def relay_events(
    chunks: AsyncIterator[bytes],
    on_usage: Callable[[dict[str, Any]], None],
    *,
    hide_usage_only_events: bool,
) -> AsyncIterator[bytes]:
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        while (split := _split_event(buffer)) is not None:
            event, buffer = split
            if b'"usage"' in event and b'"usage":null' not in event:
                payload = _payload(event)
                if payload is not None and payload.get("usage"):
                    on_usage(payload)
                    if hide_usage_only_events and not payload.get("choices"):
                        continue
            yield event

    if buffer:
        yield buffer
