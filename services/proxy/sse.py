"""Relaying a server-sent event stream as it arrives, looking only at the events that matter.

What one read from the provider brings is passed on in one write, as the provider's
own bytes, as soon as it holds complete events; only a trailing partial event waits
for the next read. Events are looked at one by one only when the read mentions a
usage figure or an error: then each such event is handed to a watcher, which may read
it (usage), hold it back (a usage-only event the client did not ask for, since the
proxy asked on its behalf) or replace it (a provider's error, re-worded for the
client). The work per read is linear in its size, however many events it carries,
and an event torn across many reads is not searched again from its start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

# Watches one event: given its bytes and its parsed data, the bytes to send instead.
Watcher = Callable[[bytes, dict[str, Any]], bytes]

_USAGE: Final = b'"usage"'
_NO_USAGE: Final = (b'"usage":null', b'"usage": null')
_ERROR: Final = b'"error"'
_SEQUENCE: Final = b'"sequence_number":'
# The longest event separator, less one: how far back a new read may complete one.
_SEAM: Final = 3


def _complete_part(buffer: bytes | bytearray, start: int = 0) -> int:
    """How many leading bytes of the buffer are whole events (separators after ``start``)."""
    lf = buffer.rfind(b"\n\n", start)
    crlf = buffer.rfind(b"\r\n\r\n", start)
    return max(lf + 2 if lf != -1 else 0, crlf + 4 if crlf != -1 else 0)


def _worth_a_look(block: bytes) -> bool:
    if _ERROR in block:
        return True

    return block.count(_USAGE) > sum(block.count(empty) for empty in _NO_USAGE)


def _events(block: bytes) -> list[bytes]:
    """Split whole events, each keeping its own separator."""
    events: list[bytes] = []
    start, size = 0, len(block)
    lf, crlf = block.find(b"\n\n"), block.find(b"\r\n\r\n")
    while start < size:
        # Each separator is searched for again only once the split has passed it.
        if lf != -1 and lf < start:
            lf = block.find(b"\n\n", start)
        if crlf != -1 and crlf < start:
            crlf = block.find(b"\r\n\r\n", start)
        ends = ([lf + 2] if lf != -1 else []) + ([crlf + 4] if crlf != -1 else [])
        end = min(ends) if ends else size
        events.append(block[start:end])
        start = end
    return events


def last_sequence_number(block: bytes) -> int | None:
    """The last ``sequence_number`` a block of Responses events carries, found without parsing.

    One backwards search per read: a relay that wants only the latest number need not
    decode every event to know it.
    """
    at = block.rfind(_SEQUENCE)
    if at == -1:
        return None

    start = at + len(_SEQUENCE)
    while start < len(block) and block[start] in b" \t":
        start += 1
    end = start
    while end < len(block) and 0x30 <= block[end] <= 0x39:
        end += 1
    return int(block[start:end]) if end > start else None


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


class EventRelay:
    """Frames a provider's event stream into whole events, relayed as they are."""

    def __init__(self, watch: Watcher) -> None:
        self._watch = watch
        self._held = bytearray()

    def feed(self, data: bytes) -> bytes:
        """What to send the client for this read: its whole events, watched."""
        if not self._held:
            end = _complete_part(data)
            if end < len(data):
                self._held += data[end:]
            return self._looked_at(data[:end]) if end else b""

        # What is held has no separator in it: only the seam and the new bytes can.
        start = max(len(self._held) - _SEAM, 0)
        self._held += data
        end = _complete_part(self._held, start)
        if not end:
            return b""

        block = bytes(self._held[:end])
        del self._held[:end]
        return self._looked_at(block)

    def discard(self) -> None:
        """The stream broke off: the partial event held is dropped."""
        self._held = bytearray()

    def close(self) -> bytes:
        """The stream ended: what is left, even without a final separator."""
        rest, self._held = bytes(self._held), bytearray()
        return self._looked_at(rest) if rest else b""

    def _looked_at(self, block: bytes) -> bytes:
        if not _worth_a_look(block):
            return block

        kept: list[bytes] = []
        for event in _events(block):
            payload = _payload(event) if _worth_a_look(event) else None
            kept.append(event if payload is None else self._watch(event, payload))
        return b"".join(kept)
