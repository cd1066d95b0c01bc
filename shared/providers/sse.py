"""Reading a server-sent event stream incrementally, as the WHATWG spec describes it.

Bytes go in as the network delivers them; whole events come out, each an event name
(``"message"`` when the stream names none) and its data lines joined by newlines.
Comment lines (``: keep-alive``, ``: OPENROUTER PROCESSING``) and ``id``/``retry`` fields
are skipped, since no provider puts meaning in them that the gateway needs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str
    data: str


class SSEParser:
    """Collects bytes until events are complete; keeps the partial rest for the next feed."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        # Bytes of the buffer already searched for a line end: a long line arriving in
        # many reads is not searched again from its start on each read.
        self._searched = 0
        self._event = ""
        self._data: list[str] = []

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        self._buffer += data
        events: list[ServerSentEvent] = []
        start = 0
        while True:
            line, start = self._next_line(start)
            if line is None:
                break

            event = self._take_line(line)
            if event is not None:
                events.append(event)
        # Consumed lines are dropped once per feed, keeping the work linear in the bytes.
        del self._buffer[:start]
        self._searched = max(self._searched - start, 0)
        return events

    def close(self) -> list[ServerSentEvent]:
        """Events completed by the end of the stream (a last event without a blank line)."""
        events: list[ServerSentEvent] = []
        rest, self._buffer, self._searched = bytes(self._buffer), bytearray(), 0
        for line in rest.decode("utf-8", errors="replace").splitlines():
            event = self._take_line(line)
            if event is not None:
                events.append(event)

        pending = self._dispatch()
        if pending is not None:
            events.append(pending)

        return events

    def _next_line(self, start: int) -> tuple[str | None, int]:
        """The line beginning at ``start`` and where the next one begins, or None if incomplete."""
        buffer = self._buffer
        search_from = max(start, self._searched)
        newline = buffer.find(b"\n", search_from)
        # A CR ends a line too; it only counts when it comes before the first LF.
        carriage = buffer.find(b"\r", search_from, newline if newline != -1 else len(buffer))
        index = carriage if carriage != -1 else newline
        if index == -1:
            self._searched = len(buffer)
            return None, start

        end = index + 1
        if buffer[index] == 0x0D:
            # A CR at the very end may be the first half of CRLF: wait for the next byte.
            if end == len(buffer):
                self._searched = index
                return None, start

            if buffer[end] == 0x0A:
                end += 1

        self._searched = end
        return buffer[start:index].decode("utf-8", errors="replace"), end

    def _take_line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()

        if line.startswith(":"):
            return None

        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data:
            self._event = ""
            return None

        event = ServerSentEvent(self._event or "message", "\n".join(self._data))
        self._event = ""
        self._data = []
        return event
