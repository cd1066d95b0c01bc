"""The stream framings providers answer in: AWS event-stream and server-sent events."""

from __future__ import annotations

import struct
import uuid
import zlib

import orjson
import pytest

from shared.providers import Usage
from shared.providers.bedrock_wire import ConverseStreamDecoder
from shared.providers.eventstream import EventStreamDecoder, EventStreamError
from shared.providers.sse import ServerSentEvent, SSEParser
from shared.secrets import ProviderKey
from tests.emulator import eventstream
from tests.unit.provider_contract import new_key


def _frames() -> bytes:
    return b"".join(
        [
            eventstream.event("messageStart", b'{"role":"assistant"}'),
            eventstream.event(
                "contentBlockDelta", b'{"contentBlockIndex":0,"delta":{"text":"Hel"}}'
            ),
            eventstream.event(
                "contentBlockDelta", b'{"contentBlockIndex":0,"delta":{"text":"lo"}}'
            ),
            eventstream.event("messageStop", b'{"stopReason":"end_turn"}'),
            eventstream.event(
                "metadata", b'{"usage":{"inputTokens":3,"outputTokens":2,"totalTokens":5}}'
            ),
        ]
    )


def test_a_hand_built_message_decodes_to_its_headers_and_payload() -> None:
    """A message laid out byte by byte as AWS documents it decodes, every header type included."""
    headers = (
        b"\x05:flag\x00"  # bool true
        + b"\x04byte\x02\x7f"
        + b"\x05short\x03"
        + struct.pack(">h", -2)
        + b"\x03int\x04"
        + struct.pack(">i", 70000)
        + b"\x04long\x05"
        + struct.pack(">q", 2**40)
        + b"\x03raw\x06"
        + struct.pack(">H", 2)
        + b"\x00\x01"
        + b"\x0b:event-type\x07"
        + struct.pack(">H", 5)
        + b"hello"
        + b"\x02ts\x08"
        + struct.pack(">q", 1_700_000_000_000)
        + b"\x02id\x09"
        + uuid.UUID(int=7).bytes
    )
    payload = b'{"a":1}'
    total = 12 + len(headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + headers + payload
    message += struct.pack(">I", zlib.crc32(message))

    (decoded,) = EventStreamDecoder().feed(message)

    assert decoded.payload == payload
    assert decoded.headers == {
        ":flag": True,
        "byte": 127,
        "short": -2,
        "int": 70000,
        "long": 2**40,
        "raw": b"\x00\x01",
        ":event-type": "hello",
        "ts": 1_700_000_000_000,
        "id": uuid.UUID(int=7),
    }
    assert decoded.header(":event-type") == "hello"


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 11, 13, 64, 1000])
def test_frames_split_at_any_byte_come_out_whole_and_in_order(size: int) -> None:
    """However the bytes are cut, every message comes out once, only when complete."""
    data = _frames()
    decoder = EventStreamDecoder()
    messages = []
    for start in range(0, len(data), size):
        messages.extend(decoder.feed(data[start : start + size]))

    assert [m.header(":event-type") for m in messages] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "messageStop",
        "metadata",
    ]
    assert decoder.pending == 0


def test_a_corrupt_checksum_stops_the_stream() -> None:
    data = bytearray(_frames())
    data[20] ^= 0xFF
    with pytest.raises(EventStreamError, match="checksum"):
        EventStreamDecoder().feed(bytes(data))

    bad_prelude = bytearray(_frames())
    bad_prelude[2] ^= 0x01
    with pytest.raises(EventStreamError):
        EventStreamDecoder().feed(bytes(bad_prelude))


def test_converse_stream_decoder_fed_one_byte_at_a_time() -> None:
    """The Converse decoder gives the same chunks however its bytes arrive."""
    data = _frames()
    decoder = ConverseStreamDecoder("m", ProviderKey(new_key()))
    chunks = [c for i in range(len(data)) for c in decoder.feed(data[i : i + 1])]
    chunks.extend(decoder.close())

    assert (
        "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        == "Hello"
    )
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["total_tokens"] == 5
    assert decoder.usage == Usage(input_tokens=3, output_tokens=2)
    assert decoder.failure is None


def test_a_converse_exception_frame_is_a_scrubbed_failure() -> None:
    key = new_key()
    decoder = ConverseStreamDecoder("m", ProviderKey(key))
    body = orjson.dumps({"message": f"Rate exceeded for {key}"})

    decoder.feed(
        eventstream.event("messageStart", b"{}")
        + eventstream.exception("throttlingException", body)
    )

    assert decoder.failure is not None
    assert (decoder.failure.status, decoder.failure.category) == (429, "rate_limited")
    assert key[:10] not in decoder.failure.message


def test_sse_events_split_anywhere_with_any_line_ending() -> None:
    """LF, CRLF and CR line endings, comments and multi-line data all parse, however cut."""
    raw = b": keep-alive\n\nevent: ping\ndata: {}\n\ndata: a\r\ndata: b\r\n\r\nid: 3\rdata: c\r\r"
    for size in (1, 2, 3, 100):
        parser = SSEParser()
        events = [e for i in range(0, len(raw), size) for e in parser.feed(raw[i : i + size])]
        events.extend(parser.close())
        assert events == [
            ServerSentEvent("ping", "{}"),
            ServerSentEvent("message", "a\nb"),
            ServerSentEvent("message", "c"),
        ]


def test_sse_last_event_without_a_blank_line_is_kept_at_close() -> None:
    parser = SSEParser()

    assert parser.feed(b"data: last") == []
    assert parser.close() == [ServerSentEvent("message", "last")]
