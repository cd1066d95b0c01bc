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
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        self._buffer += data
        events: list[ServerSentEvent] = []
        while True:
            line, found = self._next_line()
            if not found:
                return events

            event = self._take_line(line)
            if event is not None:
                events.append(event)

    def close(self) -> list[ServerSentEvent]:
        """Events completed by the end of the stream (a last event without a blank line)."""
        events: list[ServerSentEvent] = []
        rest, self._buffer = self._buffer, b""
        for line in rest.decode("utf-8", errors="replace").splitlines():
            event = self._take_line(line)
            if event is not None:
                events.append(event)

        pending = self._dispatch()
        if pending is not None:
            events.append(pending)

        return events

    def _next_line(self) -> tuple[str, bool]:
        found = [i for i in (self._buffer.find(b"\n"), self._buffer.find(b"\r")) if i != -1]
        if not found:
            return "", False

        index = min(found)
        end = index + 1
        if self._buffer[index] == 0x0D:
            # A CR at the very end may be the first half of CRLF: wait for the next byte.
            if end == len(self._buffer):
                return "", False

            if self._buffer[end] == 0x0A:
                end += 1

        line = self._buffer[:index].decode("utf-8", errors="replace")
        self._buffer = self._buffer[end:]
        return line, True

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
