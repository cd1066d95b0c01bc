"""A lean HTTP/1.1 client for the proxy's calls to providers.

Every provider call passes through here, so whatever this client spends it spends on every
request. A general-purpose client builds request objects, a cookie jar, tracing hooks,
multidicts and several timers per call; this one does only what the proxy needs: the request
goes out as one write, the answer is parsed by llhttp (through ``httptools``) straight from
the event loop's protocol callbacks, and each origin keeps a small pool of keep-alive
connections. It runs on uvloop and on plain asyncio alike.

A kept-alive connection the server closed while idle is found out only when used: a
request on it that gets not one byte of answer is sent once more, on a fresh connection.
Servers close idle connections without reading what arrives, which is the case this
covers; a server that read a request and then closed without a byte of answer would see
it twice.

What it deliberately does not do:

- follow redirects: a request carrying a provider key must never be replayed to another
  address, so a 3xx is returned as it came;
- read proxy settings from the environment: provider URLs are set by admins and reached
  directly;
- keep cookies, decompress bodies (the proxy relays the provider's bytes and asks for them
  uncompressed), pipeline requests or speak HTTP/2.

Errors::

    UpstreamError           the connection failed, broke, or the answer was not HTTP
    └── UpstreamTimeout     connecting or reading took too long (also a TimeoutError)

Their messages are safe to show: they never quote a header value or the URL's query, since
headers carry provider keys and some providers take the key in the query. A request this
client will not send (CR or LF in a header, a framing header set by the caller, a URL it
cannot reach) raises ValueError before anything is sent.

A response must be released or closed: until then its connection counts against the
origin's limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import string
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from functools import lru_cache
from types import TracebackType
from typing import Final, NamedTuple, Self, cast
from urllib.parse import urlsplit

import httptools

__all__ = ["UpstreamClient", "UpstreamError", "UpstreamResponse", "UpstreamTimeout"]

# Reading pauses once this much body waits unread, and resumes when a quarter of it is left.
_HIGH_WATER: Final = 256 * 1024
_LOW_WATER: Final = _HIGH_WATER // 4
# Once the headers are in, the body is parsed this much at a time, as the reader asks for
# it: a read of a quarter of a megabyte (a provider writing a thousand events at once)
# would otherwise be parsed, then relayed, whole before its first event could go out.
_PARSE_SLICE: Final = 16 * 1024
# llhttp sets no bound on a response head; a server sending endless headers is cut off.
_MAX_HEAD_BYTES: Final = 64 * 1024
# Framing is the client's alone: a caller's Content-Length, Transfer-Encoding or Host could
# disagree with the body or the URL and let the server read one request as two.
_FRAMING_HEADERS: Final = frozenset({"content-length", "transfer-encoding", "host"})
_TOKEN_CHARS: Final = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")
# RFC 9110 asks user agents not to announce an empty body where the method expects none.
_BODILESS_METHODS: Final = frozenset({"GET", "HEAD"})


class UpstreamError(Exception):
    """The connection failed, broke, or the answer was not HTTP."""


class UpstreamTimeout(UpstreamError, TimeoutError):
    """Connect or read timed out."""


class _StaleConnection(UpstreamError):
    """A reused keep-alive connection was closed by the server before it answered."""


class _Target(NamedTuple):
    """What a URL short of its query means to the client, worked out once per URL."""

    origin: str
    host: str
    port: int
    tls: bool
    path: str
    # The request head from the path to the caller's headers, without and with a query.
    line_and_host: str
    version_and_host: str


def _split_query(url: str) -> tuple[str, str]:
    """The URL up to its query, and the query: only the first part is worth caching.

    Some providers take the key in the query, so the query is never kept.
    """
    if "#" in url:
        url = url.partition("#")[0]
    address, _, query = url.partition("?")
    if query and not _is_printable_ascii(query):
        raise ValueError("the URL's query must be percent-encoded")
    return address, query


def _is_printable_ascii(text: str) -> bool:
    return text.isascii() and text.isprintable() and " " not in text


@lru_cache(maxsize=512)
def _target(address: str) -> _Target:
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https"):
        raise ValueError("the URL must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the URL may not carry credentials")

    host = parts.hostname
    if not host or not host.isascii():
        raise ValueError("the URL must name an ASCII host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"the port of {host} is not a valid port number") from None

    tls = parts.scheme == "https"
    default_port = 443 if tls else 80
    if port is None:
        port = default_port
    path = parts.path or "/"
    if not _is_printable_ascii(path):
        raise ValueError(f"the path to {host} must be percent-encoded")

    named = f"[{host}]" if ":" in host else host
    authority = named if port == default_port else f"{named}:{port}"
    version_and_host = f" HTTP/1.1\r\nHost: {authority}\r\n"
    return _Target(
        origin=f"{parts.scheme}://{authority}",
        host=host,
        port=port,
        tls=tls,
        path=path,
        line_and_host=f" {path}{version_and_host}",
        version_and_host=version_and_host,
    )


@lru_cache(maxsize=256)
def _is_token(name: str) -> bool:
    return bool(name) and _TOKEN_CHARS.issuperset(name)


def _encode_head(
    method: str, target: _Target, query: str, headers: Mapping[str, str], body_size: int
) -> bytes:
    """The request line and headers; the body follows them in the same write."""
    if not _is_token(method):
        raise ValueError("the method must be an HTTP token such as GET or POST")

    if query:
        lines = [method, " ", target.path, "?", query, target.version_and_host]
    else:
        lines = [method, target.line_and_host]
    for name, value in headers.items():
        if not _is_token(name):
            raise ValueError("a header name must be an HTTP token (no CR, LF, space or colon)")
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError("a header value may not contain CR, LF or NUL")
        lowered = name.lower()
        if lowered in _FRAMING_HEADERS:
            raise ValueError(f"the {lowered} header is set by the client, not the caller")
        lines.append(f"{name}: {value}\r\n")
    if body_size or method not in _BODILESS_METHODS:
        lines.append(f"Content-Length: {body_size}\r\n")
    lines.append("\r\n")

    try:
        return "".join(lines).encode()
    except UnicodeEncodeError:
        # The codec's own error quotes the text it failed on, keys included.
        raise ValueError("a header is not encodable as UTF-8") from None


class _Headers(Mapping[str, str]):
    """Response headers by lower-cased name; lookups ignore case."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, str]) -> None:
        self._fields = fields

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        # Names only: a value may be a session cookie or an account identifier.
        return f"<headers {sorted(self._fields)}>"


class _Connection(asyncio.Protocol):
    """One connection to an origin, and the exchange it is carrying, if any.

    Fed by the event loop (``data_received``, ``connection_lost``) and by the parser
    (``on_header``, ``on_body``...); awaited by the request and its response. Waiters are
    only ever woken with a result: what happened is read from the connection's state, so no
    future is left holding an exception nobody retrieves.
    """

    __slots__ = (
        "_body",
        "_buffered",
        "_complete",
        "_error",
        "_fields",
        "_head_done",
        "_head_request",
        "_head_size",
        "_loop",
        "_lost",
        "_lost_waiter",
        "_parser",
        "_paused",
        "_pieces",
        "_pool",
        "_read_timeout",
        "_received",
        "_reusable",
        "_transport",
        "_unparsed",
        "_unparsed_at",
        "_waiter",
        "active",
        "idle",
        "idle_since",
        "reused",
        "status",
    )

    def __init__(self, pool: _Pool, read_timeout: float | None) -> None:
        self._pool = pool
        self._loop = pool.loop
        self._read_timeout = read_timeout
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._lost = False
        self._lost_waiter: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._body: deque[bytes] = deque()
        self._pieces: list[bytes] = []
        # Bytes received but not parsed yet, and how far into the first of them parsing is.
        self._unparsed: deque[bytes] = deque()
        self._unparsed_at = 0
        # Every byte held for the reader: body pieces parsed and bytes not yet parsed.
        self._buffered = 0
        self._paused = False
        self.reused = False
        self.idle = False
        self.idle_since = 0.0
        self._reset(head_request=False)
        self.active = False

    def _reset(self, *, head_request: bool) -> None:
        self.active = True
        self.status = 0
        self._head_request = head_request
        self._fields: dict[str, str] = {}
        self._head_done = False
        self._head_size = 0
        self._complete = False
        self._reusable = False
        self._received = False
        self._error: UpstreamError | None = None

    @property
    def closing(self) -> bool:
        return self._lost or self._transport is None or self._transport.is_closing()

    @property
    def fields(self) -> dict[str, str]:
        return self._fields

    # The request's side.

    async def exchange(self, head: bytes, body: bytes, *, head_request: bool) -> None:
        """Send the request; return once the response's status and headers are in."""
        if self._lost or self._transport is None:
            if self.reused:
                # Handed over by another request, and closed by the server since.
                raise _StaleConnection("connection closed by the server while idle")
            raise UpstreamError("connection closed before the request was sent")

        self._reset(head_request=head_request)
        if body:
            # One system call for both, without copying a large body behind the head.
            self._transport.writelines((head, body))
        else:
            self._transport.write(head)

        while not self._head_done:
            if self._error is not None:
                raise self._error
            await self._wait("timed out waiting for the response headers")

    async def next_piece(self) -> bytes:
        """The body bytes of the next network read (or slice of one), or b"" at the end."""
        body = self._body
        while not body:
            if self._unparsed and self._error is None:
                self._parse_slice()
                continue
            if self._error is not None:
                raise self._error
            if self._complete:
                return b""
            await self._wait("timed out while reading the response body")

        piece = body.popleft()
        self._buffered -= len(piece)
        if self._paused and self._buffered <= _LOW_WATER:
            self._resume()
        return piece

    def release(self) -> None:
        """Back to the pool if the whole answer came and the server allows reuse; else close."""
        self.active = False
        if self._lost or not self._complete or not self._reusable or self._error is not None:
            self.drop(UpstreamError("the connection was not reusable"))
            return

        if self._head_request:
            # The parser still waits for the body a HEAD answer announces but never sends.
            self._parser = httptools.HttpResponseParser(self)
        self._body.clear()
        self._unparsed.clear()
        self._unparsed_at = 0
        self._buffered = 0
        if self._paused:
            self._resume()
        self._pool.put(self)

    def drop(self, error: UpstreamError) -> None:
        """Close the connection; an exchange still waiting fails with ``error``."""
        if self._error is None and not self._complete:
            self._error = error
        self._reusable = False
        if self._transport is not None:
            self._transport.abort()
        self._wake()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def when_lost(self) -> asyncio.Future[None]:
        waiter = self._lost_waiter = self._loop.create_future()
        if self._lost or self._transport is None:
            waiter.set_result(None)
        return waiter

    async def _wait(self, timeout_message: str) -> None:
        waiter = self._waiter = self._loop.create_future()
        timer = None
        if self._read_timeout is not None:
            timer = self._loop.call_later(self._read_timeout, self._time_out, timeout_message)
        try:
            await waiter
        except asyncio.CancelledError:
            # Whoever waited is gone; so is the provider's work on their behalf.
            self.drop(UpstreamError("the call was cancelled"))
            raise
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def _time_out(self, message: str) -> None:
        self.drop(UpstreamTimeout(message))

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _resume(self) -> None:
        self._paused = False
        if not self.closing and self._transport is not None:
            self._transport.resume_reading()

    # The event loop's side.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.active:
            # Bytes nobody asked for: the connection's framing can no longer be trusted.
            self.drop(UpstreamError("the server sent bytes on an idle connection"))
            return

        self._received = True
        if self._unparsed or (self._head_done and len(data) > _PARSE_SLICE):
            # Parsed a slice at a time as the reader asks (see _PARSE_SLICE).
            self._hold_unparsed(data)
        else:
            self._parse(data)
        if self._head_done:
            self._wake()

    def _parse(self, data: bytes) -> None:
        """Feed the parser until the headers are in and some body is ready; hold the rest."""
        size = len(data)
        start = 0
        while start < size:
            end = min(start + _PARSE_SLICE, size)
            if not self._feed(data[start:end] if start or end < size else data):
                return
            start = end
            if self._head_done and self._pieces:
                break

        self._take_pieces()
        if start < size:
            self._hold_unparsed(data[start:])

    def _parse_slice(self) -> None:
        """Parse the next slice of the bytes held unparsed."""
        first, at = self._unparsed[0], self._unparsed_at
        piece = first[at : at + _PARSE_SLICE]
        at += len(piece)
        if at >= len(first):
            self._unparsed.popleft()
            at = 0
        self._unparsed_at = at
        self._buffered -= len(piece)
        if self._feed(piece):
            self._take_pieces()
        if self._paused and self._buffered <= _LOW_WATER:
            self._resume()

    def _hold_unparsed(self, data: bytes) -> None:
        self._unparsed.append(data)
        self._hold(len(data))

    def _feed(self, data: bytes) -> bool:
        """Parse some bytes; False if the connection was dropped for what they held."""
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            # The body parsed before the fault still counts; after a complete answer, only
            # the connection is spoiled.
            self._take_pieces()
            self.drop(UpstreamError("the answer was not HTTP/1.1"))
            return False

        if not self._head_done and not self._pieces:
            self._head_size += len(data)
            if self._head_size > _MAX_HEAD_BYTES:
                self.drop(UpstreamError("the response headers are too large"))
                return False
        return True

    def _take_pieces(self) -> None:
        """What one parse gave becomes one piece, however many chunks held it."""
        pieces = self._pieces
        if not pieces:
            return

        piece = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        pieces.clear()
        self._body.append(piece)
        self._hold(len(piece))

    def _hold(self, size: int) -> None:
        self._buffered += size
        if self._buffered > _HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        # What arrived before the close decides whether the answer was whole.
        while self._unparsed and self._error is None:
            self._parse_slice()
        self._lost = True
        self._pool.forget(self)
        if self.active and not self._complete and self._error is None:
            self._end_at_close(exc)
        self._reusable = False
        self._wake()
        if self._lost_waiter is not None and not self._lost_waiter.done():
            self._lost_waiter.set_result(None)

    def _end_at_close(self, exc: Exception | None) -> None:
        """What the server closing the connection means for the exchange under way."""
        how = "closed" if exc is None else "reset"
        if not self._head_done:
            if self.reused and not self._received:
                self._error = _StaleConnection(f"connection {how} by the server while idle")
            else:
                self._error = UpstreamError(f"connection {how} before the response headers")
            return

        transfer_encoding = self._fields.get("transfer-encoding", "")
        delimited_by_close = "content-length" not in self._fields and not (
            transfer_encoding.rstrip().lower().endswith("chunked")
        )
        if delimited_by_close and exc is None:
            self._complete = True
            return

        self._error = UpstreamError(f"connection {how} in the middle of the response body")

    # The parser's side.

    def on_message_begin(self) -> None:
        if self._complete:
            # A second answer to one request: nothing after it can be trusted.
            self._reusable = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head_done:
            # Trailers of a chunked body; the headers handed out are final.
            return

        key = name.lower().decode("latin-1")
        text = value.decode("latin-1")
        previous = self._fields.get(key)
        self._fields[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        if self._head_done:
            # The head of a second answer to one request: the first one stands, and the
            # connection is not trusted again.
            self._reusable = False
            return

        status = self._parser.get_status_code()
        if status < 200:
            if status == 101:
                self.drop(UpstreamError("the server switched protocols"))
            # An interim answer (103 Early Hints, say); the real one follows.
            self._fields = {}
            return

        self.status = status
        self._head_done = True
        if self._head_request:
            # llhttp cannot be told the request was HEAD, so it would wait for the body the
            # headers announce; the answer ends here.
            self._complete = True
            self._reusable = self._parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        if self._complete:
            self._reusable = False
            return

        self._pieces.append(body)

    def on_message_complete(self) -> None:
        if not self._head_done or self._complete:
            return

        self._complete = True
        # False for Connection: close, and for HTTP/1.0 unless it asked for keep-alive.
        self._reusable = self._parser.should_keep_alive()


class _Pool:
    """The connections to one origin: the idle ones stacked, at most ``limit`` open."""

    def __init__(self, client: UpstreamClient, target: _Target) -> None:
        self._client = client
        self._host = target.host
        self._port = target.port
        self._tls = target.tls
        self.loop = asyncio.get_running_loop()
        self._limit = client.max_connections_per_host
        self._idle: deque[_Connection] = deque()
        self._connections: set[_Connection] = set()
        # Slots promised to waiting requests that have not opened their connection yet.
        self._promised = 0
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    async def acquire(self, *, fresh: bool) -> _Connection:
        """An idle connection (most recently used first), or a new one once a slot is free.

        Waiting for a free slot counts toward the connect timeout: the request gets its
        connection within that time, or fails rather than queueing behind long streams.
        """
        if self._closed:
            raise UpstreamError("the client is closed")
        if not fresh:
            idle = self._idle
            while idle:
                connection = idle.pop()
                connection.idle = False
                if not connection.closing:
                    connection.reused = True
                    return connection

        try:
            async with asyncio.timeout(self._client.connect_timeout):
                if len(self._connections) + self._promised >= self._limit:
                    handed = await self._wait_for_slot()
                    if handed is not None:
                        handed.reused = True
                        return handed
                    self._promised -= 1
                return await self._open()
        except TimeoutError:
            raise UpstreamTimeout(f"timed out while connecting to {self._host}") from None

    def put(self, connection: _Connection) -> None:
        if self._closed:
            connection.close()
            return

        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return

        connection.idle = True
        connection.idle_since = self.loop.time()
        self._idle.append(connection)
        if self._sweeper is None:
            self._schedule_sweep()

    def forget(self, connection: _Connection) -> None:
        """The connection is closed: it leaves the pool and frees its slot."""
        if connection not in self._connections:
            return

        self._connections.remove(connection)
        if connection.idle:
            connection.idle = False
            self._idle.remove(connection)
        self._promise_slot()

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(UpstreamError("the client is closed"))

        lost = []
        for connection in list(self._connections):
            lost.append(connection.when_lost())
            connection.drop(UpstreamError("the client is closed"))
        if lost:
            await asyncio.gather(*lost)

    async def _wait_for_slot(self) -> _Connection | None:
        """A connection handed over by a finished request, or None: a slot is promised."""
        waiter: asyncio.Future[_Connection | None] = self.loop.create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except BaseException:
            if not waiter.done() or waiter.cancelled():
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            elif waiter.exception() is None:
                # Given something just as the wait ended; pass it on to the next in line.
                handed = waiter.result()
                if handed is None:
                    self._promised -= 1
                    self._promise_slot()
                else:
                    self.put(handed)
            raise

    def _promise_slot(self) -> None:
        while self._waiters and len(self._connections) + self._promised < self._limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._promised += 1
                waiter.set_result(None)
                return

    async def _open(self) -> _Connection:
        connection = _Connection(self, self._client.read_timeout)
        self._connections.add(connection)
        tls = self._client.tls_context() if self._tls else None
        try:
            await self.loop.create_connection(
                lambda: connection,
                self._host,
                self._port,
                ssl=tls,
                server_hostname=self._host if tls is not None else None,
            )
        except OSError as error:
            self.forget(connection)
            raise _connect_error(error, self._host) from error
        except BaseException:
            self.forget(connection)
            raise

        if self._closed:
            connection.drop(UpstreamError("the client is closed"))
            raise UpstreamError("the client is closed")
        return connection

    def _schedule_sweep(self) -> None:
        if self._idle:
            expires = self._idle[0].idle_since + self._client.idle_seconds
            self._sweeper = self.loop.call_at(expires, self._sweep)

    def _sweep(self) -> None:
        """Close the connections idle for too long, before the server does it mid-request."""
        self._sweeper = None
        expired = self.loop.time() - self._client.idle_seconds
        idle = self._idle
        while idle and idle[0].idle_since <= expired:
            connection = idle.popleft()
            connection.idle = False
            connection.close()
        self._schedule_sweep()


def _connect_error(error: OSError, host: str) -> UpstreamError:
    if isinstance(error, TimeoutError):
        return UpstreamTimeout(f"timed out while connecting to {host}")
    if isinstance(error, ssl.SSLCertVerificationError):
        return UpstreamError(f"the TLS certificate of {host} was refused: {error.verify_message}")
    if isinstance(error, ssl.SSLError):
        return UpstreamError(f"the TLS handshake with {host} failed")
    if isinstance(error, socket.gaierror):
        return UpstreamError(f"could not resolve {host}")
    if isinstance(error, ConnectionRefusedError):
        return UpstreamError(f"connection refused by {host}")
    if isinstance(error, ConnectionResetError):
        return UpstreamError(f"connection reset by {host}")
    return UpstreamError(f"could not connect to {host}")


class UpstreamResponse:
    """A provider's answer: status and headers in, the body still to be read."""

    __slots__ = ("_connection", "_max_body_bytes", "headers", "status")

    def __init__(self, connection: _Connection, max_body_bytes: int) -> None:
        self.status: int = connection.status
        self.headers: Mapping[str, str] = _Headers(connection.fields)
        self._connection: _Connection | None = connection
        self._max_body_bytes = max_body_bytes

    async def read(self) -> bytes:
        """The whole body; UpstreamError if it is larger than the client allows."""
        connection = self._live()
        parts = []
        size = 0
        while piece := await connection.next_piece():
            size += len(piece)
            if size > self._max_body_bytes:
                self.close()
                raise UpstreamError(
                    f"the response body is larger than {self._max_body_bytes} bytes"
                )
            parts.append(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives: each network read in one piece, a large one in slices."""
        while piece := await self._live().next_piece():
            yield piece

    def close(self) -> None:
        """Drop the connection, so the provider stops working on the request."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.active = False
            connection.drop(UpstreamError("the response was closed"))

    def release(self) -> None:
        """Return the connection to the pool if it can carry another request; else close it."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.release()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def _live(self) -> _Connection:
        if self._connection is None:
            raise UpstreamError("the response was already released")
        return self._connection


class UpstreamClient:
    """Provider calls over pooled HTTP/1.1 connections, one pool per origin.

    ``connect_timeout`` covers waiting for a free connection when an origin has
    ``max_connections_per_host`` busy, then DNS, TCP and the TLS handshake. ``read_timeout``
    bounds the wait for the response headers, then each wait for more of the body.
    """

    def __init__(
        self,
        *,
        max_connections_per_host: int = 100,
        connect_timeout: float = 10.0,
        read_timeout: float | None = 300.0,
        idle_seconds: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        max_body_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if max_connections_per_host < 1:
            raise ValueError("max_connections_per_host must be at least 1")

        self.max_connections_per_host = max_connections_per_host
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.idle_seconds = idle_seconds
        self.max_body_bytes = max_body_bytes
        self._ssl_context = ssl_context
        self._pools: dict[str, _Pool] = {}
        self._closed = False

    async def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> UpstreamResponse:
        """The response once its status line and headers have arrived; the body is not read."""
        if self._closed:
            raise UpstreamError("the client is closed")

        address, query = _split_query(url)
        target = _target(address)
        head = _encode_head(method, target, query, headers, len(body))
        pool = self._pools.get(target.origin)
        if pool is None:
            pool = self._pools[target.origin] = _Pool(self, target)
        head_request = method == "HEAD"

        connection = await pool.acquire(fresh=False)
        try:
            await connection.exchange(head, body, head_request=head_request)
        except _StaleConnection:
            # The server closed a kept-alive connection, as servers do with idle ones,
            # without a byte of answer: the request goes once more, on a connection of its own.
            connection = await pool.acquire(fresh=True)
            await connection.exchange(head, body, head_request=head_request)
        return UpstreamResponse(connection, self.max_body_bytes)

    async def close(self) -> None:
        """Close every connection, idle or busy; the client cannot be used afterwards."""
        self._closed = True
        pools = list(self._pools.values())
        self._pools.clear()
        for pool in pools:
            await pool.close()

    def tls_context(self) -> ssl.SSLContext:
        # Built on first use: loading the system's certificates is not free.
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context
