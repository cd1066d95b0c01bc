"""Decoding the AWS event-stream binary framing that Bedrock's ConverseStream answers in.

A message is::

    total length   u32 big-endian (the whole message, these 4 bytes included)
    headers length u32
    prelude CRC    u32, CRC-32 of the 8 bytes above
    headers        name length (u8), name, value type (u8), value
    payload        total - headers - 16 bytes
    message CRC    u32, CRC-32 of everything before it

Header value types: 0 true, 1 false, 2 byte, 3 short, 4 int, 5 long, 6 byte array (u16
length), 7 string (u16 length), 8 timestamp (i64 milliseconds), 9 UUID (16 bytes).
Messages are decoded as bytes arrive; a message split across reads waits for the rest.
A bad CRC or an impossible length ends the stream: nothing after it can be trusted.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import Final

_PRELUDE: Final = 12
_MESSAGE_CRC: Final = 4
# Bedrock's messages are small; a length beyond this is corruption, not a big message.
MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024

HeaderValue = bool | int | bytes | str | uuid.UUID


class EventStreamError(ValueError):
    """The bytes are not a well-formed event stream."""


@dataclass(frozen=True, slots=True)
class EventStreamMessage:
    headers: dict[str, HeaderValue]
    payload: bytes

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value if isinstance(value, str) else None


class EventStreamDecoder:
    """Whole messages out of bytes fed in any pieces."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[EventStreamMessage]:
        self._buffer.extend(data)
        messages: list[EventStreamMessage] = []
        while len(self._buffer) >= _PRELUDE:
            total, headers_length, prelude_crc = struct.unpack_from(">III", self._buffer)
            if zlib.crc32(self._buffer[:8]) != prelude_crc:
                raise EventStreamError("the prelude checksum does not match")

            if total > MAX_MESSAGE_BYTES or total < _PRELUDE + headers_length + _MESSAGE_CRC:
                raise EventStreamError(f"impossible message length {total}")

            if len(self._buffer) < total:
                break

            message = bytes(self._buffer[:total])
            del self._buffer[:total]
            (message_crc,) = struct.unpack_from(">I", message, total - _MESSAGE_CRC)
            if zlib.crc32(message[:-_MESSAGE_CRC]) != message_crc:
                raise EventStreamError("the message checksum does not match")

            headers = _headers(message[_PRELUDE : _PRELUDE + headers_length])
            payload = message[_PRELUDE + headers_length : total - _MESSAGE_CRC]
            messages.append(EventStreamMessage(headers, payload))
        return messages


def _headers(raw: bytes) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    position = 0
    try:
        while position < len(raw):
            name_length = raw[position]
            name = raw[position + 1 : position + 1 + name_length].decode("utf-8")
            position += 1 + name_length
            value, position = _value(raw, position)
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError):
        raise EventStreamError("a header is cut short or not UTF-8") from None

    return headers


def _value(raw: bytes, position: int) -> tuple[HeaderValue, int]:
    kind = raw[position]
    position += 1
    if kind in (0, 1):
        return kind == 0, position

    fixed = {2: ">b", 3: ">h", 4: ">i", 5: ">q", 8: ">q"}
    if kind in fixed:
        fmt = fixed[kind]
        (number,) = struct.unpack_from(fmt, raw, position)
        return int(number), position + struct.calcsize(fmt)

    if kind in (6, 7):
        (length,) = struct.unpack_from(">H", raw, position)
        start = position + 2
        if start + length > len(raw):
            raise IndexError("value past the end of the headers")

        data = raw[start : start + length]
        return (data.decode("utf-8") if kind == 7 else bytes(data)), start + length

    if kind == 9:
        if position + 16 > len(raw):
            raise IndexError("UUID past the end of the headers")

        return uuid.UUID(bytes=bytes(raw[position : position + 16])), position + 16

    raise EventStreamError(f"unknown header value type {kind}")
