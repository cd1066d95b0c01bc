"""The SSE parser the adapters decode streams with: whole events, in time linear in the bytes."""

from __future__ import annotations

import time

from shared.providers.sse import ServerSentEvent, SSEParser

EVENT = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'


def test_line_ends_torn_across_reads_are_joined() -> None:
    """A CR at the end of one read and its LF at the start of the next make one line end."""
    parser = SSEParser()
    raw = b"event: a\r\ndata: 1\r\n\r\ndata: 2\r\rdata: 3\n\n"

    events = [event for byte in raw for event in parser.feed(bytes([byte]))] + parser.close()

    assert events == [
        ServerSentEvent("a", "1"),
        ServerSentEvent("message", "2"),
        ServerSentEvent("message", "3"),
    ]


def test_many_events_in_one_read_cost_linear_time() -> None:
    """Sixty-four thousand events in one read (4 MB) are parsed in well under a second."""
    parser = SSEParser()

    started = time.perf_counter()
    events = parser.feed(EVENT * 64_000)
    elapsed = time.perf_counter() - started

    assert len(events) == 64_000
    # Re-slicing the buffer after every line made this take about 16 s.
    assert elapsed < 2.0


def test_a_long_line_in_many_reads_comes_out_as_one_event() -> None:
    """A four-megabyte data line arriving in 4 KiB reads comes out whole, as one event."""
    parser = SSEParser()
    line = b'data: "' + b"x" * (4 * 1024 * 1024) + b'"\n\n'

    started = time.perf_counter()
    events = [e for i in range(0, len(line), 4096) for e in parser.feed(line[i : i + 4096])]
    elapsed = time.perf_counter() - started

    assert [len(e.data) for e in events] == [4 * 1024 * 1024 + 2]
    assert elapsed < 1.0
