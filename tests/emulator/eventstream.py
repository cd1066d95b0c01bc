"""Encoding AWS event-stream messages, the framing Bedrock's ConverseStream answers in.

The decoder under test lives in ``shared.providers.eventstream``; this writer follows the
same published layout independently, so the emulator can speak it.
"""

from __future__ import annotations

import struct
import zlib

HeaderValue = str | bytes | bool | int


def encode_message(headers: dict[str, HeaderValue], payload: bytes) -> bytes:
    """One message: prelude with its CRC, headers, payload, message CRC."""
    encoded_headers = b"".join(_header(name, value) for name, value in headers.items())
    total = 12 + len(encoded_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + encoded_headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _header(name: str, value: HeaderValue) -> bytes:
    raw_name = name.encode()
    head = struct.pack(">B", len(raw_name)) + raw_name
    if isinstance(value, bool):
        return head + struct.pack(">B", 0 if value else 1)

    if isinstance(value, int):
        return head + struct.pack(">Bi", 4, value)

    if isinstance(value, bytes):
        return head + struct.pack(">BH", 6, len(value)) + value

    raw = value.encode()
    return head + struct.pack(">BH", 7, len(raw)) + raw


def event(event_type: str, payload: bytes) -> bytes:
    return encode_message(
        {
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        },
        payload,
    )


def exception(exception_type: str, payload: bytes) -> bytes:
    return encode_message(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        payload,
    )
