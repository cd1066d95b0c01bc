"""The proxy's HTTP/1.1 client against servers that send exactly the bytes each test chooses."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import ipaddress
import os
import secrets
import socket
import ssl
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.proxy.http1 import UpstreamClient, UpstreamError, UpstreamTimeout, _target

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class Peer:
    """One accepted connection, seen from the server's side."""

    number: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    requests: list[bytes]

    async def request(self) -> bytes | None:
        """The next request's bytes, or None once the client has closed the connection."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        request = head + await self.reader.readexactly(length)
        self.requests.append(request)
        return request

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def until_closed(self) -> None:
        """Returns once the client has closed the connection."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass


Serve = Callable[[Peer], Awaitable[None]]


@dataclass
class Upstream:
    """A throwaway server on 127.0.0.1 running ``serve`` for each connection it accepts."""

    serve: Serve
    tls: ssl.SSLContext | None = None
    peers: list[Peer] = field(default_factory=list)
    requests: list[bytes] = field(default_factory=list)
    open: int = 0
    most_open: int = 0
    port: int = 0
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def accepted(self) -> int:
        return len(self.peers)

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    async def __aenter__(self) -> Upstream:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = Peer(len(self.peers) + 1, reader, writer, self.requests)
        self.peers.append(peer)
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await self.serve(peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Ended by __aexit__; the streams machinery reports a handler that ends cancelled.
            pass
        finally:
            self.open -= 1
            writer.close()
            self._tasks.discard(task)


def answering(*responses: bytes) -> Serve:
    """Answers the requests on each connection with ``responses`` in turn, the last one repeating."""

    async def serve(peer: Peer) -> None:
        answered = 0
        while await peer.request() is not None:
            await peer.send(responses[min(answered, len(responses) - 1)])
            answered += 1

    return serve


@contextlib.asynccontextmanager
async def upstream_client(**options: Any) -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient(**options)
    try:
        yield client
    finally:
        await client.close()


async def get(client: UpstreamClient, url: str, headers: dict[str, str] | None = None) -> bytes:
    async with await client.request("GET", url, headers or {}, b"") as response:
        return await response.read()


@pytest.fixture(autouse=True)
async def loop_complaints() -> AsyncIterator[None]:
    """Whatever the loop reports as mishandled (a task or future dropped with its error) fails the test."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    complaints: list[str] = []
    loop.set_exception_handler(lambda _, context: complaints.append(str(context.get("message"))))
    yield
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()
    await asyncio.sleep(0)
    loop.set_exception_handler(previous)
    assert complaints == []


async def test_the_request_goes_out_as_one_exact_message() -> None:
    """The request is its line, Host with the port, the caller's headers and Content-Length, and nothing else."""
    async with Upstream(answering(OK)) as upstream, upstream_client() as client:
        headers = {"Authorization": "Bearer k", "Content-Type": "application/json"}
        async with await client.request(
            "POST", upstream.url("/v1/chat?x=1"), headers, b'{"a":1}'
        ) as response:
            assert await response.read() == b"ok"

        assert await get(client, upstream.url("/v1/models")) == b"ok"

    host = f"127.0.0.1:{upstream.port}".encode()
    assert upstream.requests == [
        b"POST /v1/chat?x=1 HTTP/1.1\r\nHost: " + host + b"\r\n"
        b"Authorization: Bearer k\r\nContent-Type: application/json\r\n"
        b'Content-Length: 7\r\n\r\n{"a":1}',
        b"GET /v1/models HTTP/1.1\r\nHost: " + host + b"\r\n\r\n",
    ]


def test_the_host_header_leaves_out_a_default_port_and_brackets_ipv6() -> None:
    """Host names the port only when it is not the scheme's own, and an IPv6 host in brackets."""
    assert _target("https://api.example.test/v1").line_and_host == (
        " /v1 HTTP/1.1\r\nHost: api.example.test\r\n"
    )
    assert _target("http://[::1]:8080").line_and_host == " / HTTP/1.1\r\nHost: [::1]:8080\r\n"
    assert _target("http://[::1]:8080").host == "::1"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/",
        "http:///path",
        "http://u:p@127.0.0.1/",
        "http://127.0.0.1/a b",
        "http://127.0.0.1:99999/",
    ],
)
async def test_a_url_the_client_cannot_call_is_refused(url: str) -> None:
    """Only http and https URLs with a host, a valid port, an encoded path and no credentials are called."""
    async with upstream_client() as client:
        with pytest.raises(ValueError):
            await client.request("GET", url, {}, b"")


async def test_the_query_is_sent_as_given_but_never_cached() -> None:
    """The query goes out verbatim, cut at a fragment, and is not part of what the URL cache keeps (it may hold a key)."""
    keys = [f"k-{secrets.token_hex(8)}" for _ in range(3)]
    _target.cache_clear()
    async with Upstream(answering(OK)) as upstream, upstream_client() as client:
        for key in keys:
            assert await get(client, upstream.url(f"/v1/models?key={key}&a=%20b#part")) == b"ok"
        with pytest.raises(ValueError):
            await get(client, upstream.url(f"/v1?key={keys[0]} x"))

    assert [request.split(b"\r\n")[0] for request in upstream.requests] == [
        f"GET /v1/models?key={key}&a=%20b HTTP/1.1".encode() for key in keys
    ]
    assert _target.cache_info().currsize == 1


async def test_response_headers_are_found_whatever_their_case_and_repeats_are_joined() -> None:
    """Header lookups ignore case and a repeated header reads as its values joined by commas."""
    answer = (
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nX-Multi: a\r\nx-multi: b\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    async with (
        Upstream(answering(answer)) as upstream,
        upstream_client() as client,
        await client.request("GET", upstream.url(), {}, b"") as response,
    ):
        assert response.status == 429
        assert response.headers.get("Retry-After") == "7"
        assert response.headers.get("retry-after") == "7"
        assert response.headers["X-MULTI"] == "a, b"
        assert "RETRY-AFTER" in response.headers
        assert response.headers.get("absent") is None
        assert await response.read() == b""


@pytest.mark.parametrize(
    ("answer", "reused"),
    [
        (OK, True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", True),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
    ],
    ids=["http11", "chunked", "http10-keep-alive", "connection-close", "http10"],
)
async def test_a_connection_is_reused_only_when_the_server_allows_it(
    answer: bytes, reused: bool
) -> None:
    """Three calls share one connection when the server keeps it alive, and take three otherwise."""
    async with Upstream(answering(answer)) as upstream, upstream_client() as client:
        for _ in range(3):
            assert await get(client, upstream.url()) == b"ok"

    assert upstream.accepted == (1 if reused else 3)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\n",
    ],
    ids=["http11", "http10"],
)
async def test_a_body_without_length_ends_when_the_server_closes(answer: bytes) -> None:
    """A body with neither length nor chunks is read until the server closes, and the connection is not reused."""
    body = b"until the end " * 1000

    async def serve(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer + body[:5000])
        await asyncio.sleep(0.01)
        await peer.send(body[5000:])

    async with Upstream(serve) as upstream, upstream_client() as client:
        assert await get(client, upstream.url()) == body
        assert await get(client, upstream.url()) == body

    assert upstream.accepted == 2


async def test_a_read_carrying_many_chunks_is_yielded_as_one_piece_as_soon_as_it_arrives() -> None:
    """Every chunk of one network read comes out as one piece, before the rest of the body exists."""
    first_read, second_read = asyncio.Event(), asyncio.Event()

    async def serve(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await first_read.wait()
        await peer.send(b"".join(b"6\r\nevent%d\r\n" % (n % 10) for n in range(40)))
        await second_read.wait()
        await peer.send(b"4\r\nlast\r\n0\r\n\r\n")

    async with (
        Upstream(serve) as upstream,
        upstream_client() as client,
        await client.request("GET", upstream.url(), {}, b"") as response,
    ):
        pieces = response.chunks()
        first_read.set()
        async with asyncio.timeout(5):
            first = await anext(pieces)
        second_read.set()
        rest = [piece async for piece in pieces]

    assert first == b"".join(b"event%d" % (n % 10) for n in range(40))
    assert rest == [b"last"]


async def test_a_large_read_is_handed_over_a_slice_at_a_time() -> None:
    """Headers and five thousand events written at once: the first piece is out before the rest is parsed."""
    events = [b"data: event %05d\n\n" % n for n in range(5000)]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(event), event) for event in events)

    async def serve(peer: Peer) -> None:
        await peer.request()
        await peer.send(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n"
        )

    async with (
        Upstream(serve) as upstream,
        upstream_client() as client,
        await client.request("GET", upstream.url(), {}, b"") as response,
    ):
        pieces = [piece async for piece in response.chunks()]

    assert b"".join(pieces) == b"".join(events)
    # Each piece is at most one slice of the wire's bytes, so the first could go out
    # before the other ~90 KB were parsed.
    assert len(pieces) > 1
    assert all(len(piece) <= 16 * 1024 for piece in pieces)


async def test_an_answer_torn_into_single_bytes_is_parsed_whole() -> None:
    """Status, headers, chunk sizes and trailers split across many reads still make one answer."""
    answer = (
        b"HTTP/1.1 201 Created\r\nX-Request-Id: abc\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n"
    )

    async def serve(peer: Peer) -> None:
        while await peer.request() is not None:
            for index in range(len(answer)):
                await peer.send(answer[index : index + 1])
                await asyncio.sleep(0.001)

    async with Upstream(serve) as upstream, upstream_client() as client:
        for _ in range(2):
            async with await client.request("GET", upstream.url(), {}, b"") as response:
                assert response.status == 201
                assert response.headers["x-request-id"] == "abc"
                assert "x-trailer" not in response.headers
                assert await response.read() == b"hello world"

    assert upstream.accepted == 1


@pytest.mark.parametrize(
    ("method", "answer"),
    [
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n"),
    ],
    ids=["head", "204", "304"],
)
async def test_answers_without_a_body_end_at_their_headers(method: str, answer: bytes) -> None:
    """A HEAD, 204 or 304 answer has no body whatever its headers say, and its connection carries the next call."""
    async with Upstream(answering(answer, OK)) as upstream, upstream_client() as client:
        async with await client.request(method, upstream.url(), {}, b"") as response:
            async with asyncio.timeout(5):
                assert await response.read() == b""

        assert await get(client, upstream.url()) == b"ok"

    assert upstream.accepted == 1


async def test_interim_answers_are_skipped() -> None:
    """A 103 Early Hints before the answer is passed over; status and headers are the final answer's."""
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n"
    async with (
        Upstream(answering(interim + OK)) as upstream,
        upstream_client() as client,
        await client.request("GET", upstream.url(), {}, b"") as response,
    ):
        assert response.status == 200
        assert "link" not in response.headers
        assert await response.read() == b"ok"


@pytest.mark.parametrize(
    "answer",
    [
        OK + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok" + b"junk",
    ],
    ids=["second-answer", "junk-after-close"],
)
async def test_bytes_after_a_complete_answer_spoil_only_the_connection(answer: bytes) -> None:
    """Whatever follows a complete answer in the same read leaves the answer intact but the connection unused."""
    async with Upstream(answering(answer)) as upstream, upstream_client() as client:
        assert await get(client, upstream.url()) == b"ok"
        assert await get(client, upstream.url()) == b"ok"

    assert upstream.accepted == 2


@pytest.mark.parametrize(
    "second",
    [
        b"HTTP/1.1 200 OK\r\nX-Second: yes\r\nContent-Length: 3\r\n\r\nyes",
        b"HTTP/1.1 103 Early\r\n\r\n",
    ],
    ids=["a-second-answer", "an-interim-answer"],
)
async def test_a_second_answer_in_the_same_read_does_not_replace_the_first(second: bytes) -> None:
    """A refusal followed at once by another head keeps its own status, headers and body."""
    first = b"HTTP/1.1 401 Unauthorized\r\nX-First: yes\r\nContent-Length: 2\r\n\r\nno"
    async with (
        Upstream(answering(first + second)) as upstream,
        upstream_client() as client,
        await client.request("GET", upstream.url(), {}, b"") as response,
    ):
        body = await response.read()
        assert (response.status, response.headers.get("x-first"), body) == (401, "yes", b"no")
        assert "x-second" not in response.headers
        assert await get(client, upstream.url()) == b"no"

    assert upstream.accepted == 2


@pytest.mark.parametrize(
    ("answer", "streamed"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", False),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n", True),
    ],
    ids=["content-length", "chunked"],
)
async def test_a_server_dying_mid_body_is_an_error(answer: bytes, streamed: bool) -> None:
    """A body cut short by the server closing raises UpstreamError, after the bytes that did arrive."""

    async def serve(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer)

    received = []
    async with (
        Upstream(serve) as upstream,
        upstream_client() as client,
        await client.request("GET", upstream.url(), {}, b"") as response,
    ):
        with pytest.raises(UpstreamError, match="middle of the response body"):
            if streamed:
                async for piece in response.chunks():
                    received.append(piece)
            else:
                await response.read()

    assert received == ([b"0123456789"] if streamed else [])


@pytest.mark.parametrize(
    "garbage",
    [b"SSH-2.0-OpenSSH_9.6\r\n", b"HTTP/1.1 200 OK\r\nX-Filler: " + b"a" * 100_000],
    ids=["not-http", "endless-headers"],
)
async def test_an_answer_that_is_not_http_is_an_error_and_closes_the_connection(
    garbage: bytes,
) -> None:
    """Garbage, or headers that never end, raise UpstreamError at once, and the connection is closed."""
    closed = asyncio.Event()

    async def serve(peer: Peer) -> None:
        await peer.request()
        await peer.send(garbage)
        await peer.until_closed()
        closed.set()

    async with Upstream(serve) as upstream, upstream_client(read_timeout=10) as client:
        with pytest.raises(UpstreamError) as raised:
            await client.request("GET", upstream.url(), {}, b"")
        async with asyncio.timeout(5):
            await closed.wait()

    assert not isinstance(raised.value, TimeoutError)


async def test_slow_headers_time_out_and_close_the_connection() -> None:
    """Headers that do not all arrive within the read timeout raise UpstreamTimeout and the connection is closed."""
    closed = asyncio.Event()

    async def serve(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\n")
        with contextlib.suppress(ConnectionError):
            for _ in range(20):
                await peer.send(b"X-Slow: 1\r\n")
                await asyncio.sleep(0.05)
            await peer.until_closed()
        closed.set()

    async with Upstream(serve) as upstream, upstream_client(read_timeout=0.2) as client:
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout, match="timed out") as raised:
            await client.request("GET", upstream.url(), {}, b"")
        waited = time.monotonic() - started
        async with asyncio.timeout(5):
            await closed.wait()

    assert isinstance(raised.value, TimeoutError)
    assert 0.2 <= waited < 1.0


async def test_a_stalled_body_times_out() -> None:
    """A body that stops arriving for longer than the read timeout raises UpstreamTimeout from read()."""

    async def serve(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
        await peer.until_closed()

    async with (
        Upstream(serve) as upstream,
        upstream_client(read_timeout=0.2) as client,
        await client.request("GET", upstream.url(), {}, b"") as response,
    ):
        with pytest.raises(UpstreamTimeout, match="reading"):
            await response.read()


async def test_calls_beyond_the_limit_wait_for_a_connection() -> None:
    """No more than max_connections_per_host connections are open at once; the other calls wait and reuse them."""

    async def serve(peer: Peer) -> None:
        while await peer.request() is not None:
            await asyncio.sleep(0.02)
            await peer.send(OK)

    async with Upstream(serve) as upstream, upstream_client(max_connections_per_host=2) as client:
        bodies = await asyncio.gather(*(get(client, upstream.url()) for _ in range(6)))

    assert bodies == [b"ok"] * 6
    assert upstream.most_open == 2
    assert upstream.accepted == 2


async def test_waiting_for_a_free_connection_counts_toward_the_connect_timeout() -> None:
    """A call that finds every connection busy for longer than the connect timeout raises UpstreamTimeout."""

    async def serve(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        await peer.until_closed()

    options = {"max_connections_per_host": 1, "connect_timeout": 0.2}
    async with Upstream(serve) as upstream, upstream_client(**options) as client:
        busy = await client.request("GET", upstream.url(), {}, b"")
        with pytest.raises(UpstreamTimeout, match="connecting"):
            await client.request("GET", upstream.url(), {}, b"")
        busy.close()

        async with await client.request("GET", upstream.url(), {}, b"") as response:
            assert response.status == 200
            response.close()

    assert upstream.accepted == 2


async def test_a_kept_alive_connection_the_server_closed_is_retried_once_on_a_fresh_one() -> None:
    """When the server closes a reused connection without answering, the call goes out again on a new connection."""

    async def serve(peer: Peer) -> None:
        if peer.number == 1:
            await peer.request()
            await peer.send(OK)
            await peer.request()
            return
        await answering(OK)(peer)

    async with Upstream(serve) as upstream, upstream_client() as client:
        assert await get(client, upstream.url("/first")) == b"ok"
        assert await get(client, upstream.url("/second")) == b"ok"

    assert upstream.accepted == 2
    assert [request.split(b" ")[1] for request in upstream.requests] == [
        b"/first",
        b"/second",
        b"/second",
    ]


@pytest.mark.parametrize(
    ("first_answer", "second_answer"),
    [(OK, b"HTTP/1.1 200"), (b"", b"")],
    ids=["after-a-response-byte", "on-a-fresh-connection"],
)
async def test_a_connection_closed_otherwise_is_not_retried(
    first_answer: bytes, second_answer: bytes
) -> None:
    """No retry once a byte of the answer has arrived, nor on a connection that was not reused."""

    async def serve(peer: Peer) -> None:
        await peer.request()
        if not first_answer:
            return
        await peer.send(first_answer)
        await peer.request()
        await peer.send(second_answer)

    async with Upstream(serve) as upstream, upstream_client() as client:
        if first_answer:
            assert await get(client, upstream.url()) == b"ok"
        with pytest.raises(UpstreamError, match="before the response headers"):
            await get(client, upstream.url())

    assert upstream.accepted == 1


async def test_an_idle_connection_is_closed_after_idle_seconds() -> None:
    """A connection left idle for idle_seconds is closed by the client, and the next call opens a new one."""
    closed = asyncio.Event()

    async def serve(peer: Peer) -> None:
        await answering(OK)(peer)
        closed.set()

    async with Upstream(serve) as upstream, upstream_client(idle_seconds=0.1) as client:
        assert await get(client, upstream.url()) == b"ok"
        released = time.monotonic()
        async with asyncio.timeout(5):
            await closed.wait()
        idle_for = time.monotonic() - released
        assert await get(client, upstream.url()) == b"ok"

    assert 0.1 <= idle_for < 1
    assert upstream.accepted == 2


async def test_a_response_released_before_its_body_arrived_closes_its_connection() -> None:
    """Releasing a response whose body has not fully arrived closes the connection instead of pooling it."""

    async def serve(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nok")
            await asyncio.sleep(0.2)
            await peer.send(b"ok")

    async with Upstream(serve) as upstream, upstream_client() as client:
        for _ in range(2):
            response = await client.request("GET", upstream.url(), {}, b"")
            response.release()

    assert upstream.accepted == 2


async def test_cancelling_a_call_waiting_for_headers_closes_its_connection() -> None:
    """A call cancelled while waiting for the answer closes the connection and frees its place in the pool."""
    received, closed = asyncio.Event(), asyncio.Event()

    async def serve(peer: Peer) -> None:
        if peer.number == 1:
            await peer.request()
            received.set()
            await peer.until_closed()
            closed.set()
            return
        await answering(OK)(peer)

    async with Upstream(serve) as upstream, upstream_client(max_connections_per_host=1) as client:
        call = asyncio.create_task(client.request("GET", upstream.url(), {}, b""))
        await received.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        async with asyncio.timeout(5):
            await closed.wait()
            assert await get(client, upstream.url()) == b"ok"

    assert upstream.accepted == 2


async def test_cancelling_a_stream_mid_body_closes_its_connection() -> None:
    """A consumer of chunks() cancelled mid-body closes the connection, so the provider stops."""
    closed = asyncio.Event()

    async def serve(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await peer.until_closed()
        closed.set()

    received: list[bytes] = []
    streaming = asyncio.Event()

    async def consume(client: UpstreamClient, url: str) -> None:
        async with await client.request("POST", url, {}, b"{}") as response:
            async for piece in response.chunks():
                received.append(piece)
                streaming.set()

    async with Upstream(serve) as upstream, upstream_client() as client:
        consumer = asyncio.create_task(consume(client, upstream.url()))
        async with asyncio.timeout(5):
            await streaming.wait()
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        async with asyncio.timeout(5):
            await closed.wait()

    assert received == [b"first"]


async def test_backpressure_pauses_the_server_and_loses_no_byte() -> None:
    """An unread stream stops the server from sending, and the whole multi-megabyte body still arrives intact."""
    body = os.urandom(48 * 1024 * 1024)
    sent_everything = asyncio.Event()

    async def serve(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        view = memoryview(body)
        for start in range(0, len(body), 1024 * 1024):
            await peer.send(view[start : start + 1024 * 1024])
        sent_everything.set()

    digest = hashlib.sha256()
    size = 0
    async with (
        Upstream(serve) as upstream,
        upstream_client() as client,
        await client.request("GET", upstream.url(), {}, b"") as response,
    ):
        pieces = response.chunks()
        first = await anext(pieces)
        await asyncio.sleep(0.5)
        stalled_server = not sent_everything.is_set()
        digest.update(first)
        size += len(first)
        async for piece in pieces:
            digest.update(piece)
            size += len(piece)

    assert stalled_server
    assert size == len(body)
    assert digest.digest() == hashlib.sha256(body).digest()


async def test_read_refuses_a_body_over_max_body_bytes() -> None:
    """read() raises UpstreamError once the body passes max_body_bytes, and closes the connection."""
    closed = asyncio.Event()

    async def serve(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000)
        await peer.until_closed()
        closed.set()

    async with Upstream(serve) as upstream, upstream_client(max_body_bytes=1000) as client:
        async with await client.request("GET", upstream.url(), {}, b"") as response:
            with pytest.raises(UpstreamError, match="larger than 1000 bytes"):
                await response.read()
        async with asyncio.timeout(5):
            await closed.wait()


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Note": "a\r\nInjected: 1"},
        {"X-Note": "a\nb"},
        {"X-Note\r\nInjected": "1"},
        {"X Note": "1"},
        {"Content-Length": "5"},
        {"transfer-encoding": "chunked"},
        {"Host": "elsewhere.test"},
    ],
    ids=["cr-lf-value", "lf-value", "cr-lf-name", "space-name", "length", "chunked", "host"],
)
async def test_headers_that_could_split_or_reframe_the_request_are_refused(
    headers: dict[str, str],
) -> None:
    """CR or LF in a header, or a framing header from the caller, raises ValueError before anything is sent."""
    async with Upstream(answering(OK)) as upstream, upstream_client() as client:
        with pytest.raises(ValueError):
            await client.request("POST", upstream.url(), headers, b"hello")

    assert upstream.accepted == 0


def closed_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return int(listener.getsockname()[1])


def chain(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error)


async def test_no_failure_ever_quotes_the_key_from_a_header_or_the_query() -> None:
    """Refused, broken, garbled, slow and malformed calls raise errors whose text never holds the key."""
    key = f"sk-test-{secrets.token_hex(16)}"
    headers = {"Authorization": f"Bearer {key}", "x-api-key": key}

    async def serve(peer: Peer) -> None:
        request = await peer.request()
        assert request is not None
        if b"/garbage" in request:
            await peer.send(b"garbage " + key.encode() + b"\r\n")
        elif b"/broken" in request:
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        else:
            await peer.until_closed()

    errors: list[BaseException] = []
    async with Upstream(serve) as upstream, upstream_client(read_timeout=0.2) as client:
        urls = [
            f"http://127.0.0.1:{closed_port()}/v1?key={key}",
            upstream.url(f"/garbage?key={key}"),
            upstream.url(f"/slow?key={key}"),
        ]
        for url in urls:
            with pytest.raises(UpstreamError) as raised:
                await client.request("GET", url, headers, b"")
            errors.append(raised.value)

        async with await client.request(
            "GET", upstream.url(f"/broken?key={key}"), headers, b""
        ) as r:
            with pytest.raises(UpstreamError) as raised:
                await r.read()
            errors.append(raised.value)

        with pytest.raises(ValueError) as refused:
            await client.request("GET", upstream.url(), {"x-api-key": f"{key}\r\nX: 1"}, b"")
        errors.append(refused.value)
        with pytest.raises(ValueError) as unencodable:
            await client.request("GET", upstream.url(), {"x-api-key": f"{key}\ud800"}, b"")
        errors.append(unencodable.value)

    assert len(errors) == 6
    assert [error for error in errors if key in chain(error)] == []


def certificate(tmp_path: Path, dns_name: str, ip: str | None) -> tuple[ssl.SSLContext, str]:
    """A server context with a fresh self-signed certificate for the names given, and its PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)])
    names: list[x509.GeneralName] = [x509.DNSName(dns_name)]
    if ip is not None:
        names.append(x509.IPAddress(ipaddress.ip_address(ip)))
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(pem)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    return server, pem.decode()


async def test_https_works_with_a_context_that_trusts_the_certificate(tmp_path: Path) -> None:
    """An https call succeeds, and reuses its connection, when the given context trusts the server's certificate."""
    server, pem = certificate(tmp_path, "upstream.test", "127.0.0.1")
    trusting = ssl.create_default_context(cadata=pem)
    async with (
        Upstream(answering(OK), tls=server) as upstream,
        upstream_client(ssl_context=trusting) as client,
    ):
        assert await get(client, upstream.url()) == b"ok"
        assert await get(client, upstream.url()) == b"ok"

    assert upstream.accepted == 1


@pytest.mark.parametrize("trusted", [True, False], ids=["wrong-host", "untrusted"])
async def test_https_refuses_a_certificate_for_another_host_or_from_nobody(
    tmp_path: Path, trusted: bool
) -> None:
    """A certificate not naming the URL's host, or one the default context does not trust, fails the call."""
    server, pem = certificate(tmp_path, "upstream.test", None if trusted else "127.0.0.1")
    context = ssl.create_default_context(cadata=pem) if trusted else None
    async with (
        Upstream(answering(OK), tls=server) as upstream,
        upstream_client(ssl_context=context) as client,
    ):
        with pytest.raises(UpstreamError, match="certificate") as raised:
            await get(client, upstream.url())

    assert not isinstance(raised.value, TimeoutError)
    assert ("match" in str(raised.value)) is trusted
    assert upstream.requests == []


async def test_closing_the_client_closes_its_connections() -> None:
    """close() closes the pooled connections, and the client refuses calls afterwards."""
    closed = asyncio.Event()

    async def serve(peer: Peer) -> None:
        await answering(OK)(peer)
        closed.set()

    async with Upstream(serve) as upstream:
        client = UpstreamClient()
        assert await get(client, upstream.url()) == b"ok"
        await client.close()
        async with asyncio.timeout(5):
            await closed.wait()
        with pytest.raises(UpstreamError, match="closed"):
            await get(client, upstream.url())


def test_the_client_runs_on_uvloop() -> None:
    """Reuse, streaming and cancellation behave the same on uvloop as on asyncio."""
    complaints: list[str] = []

    async def scenario() -> tuple[bytes, list[bytes], int, bool]:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: complaints.append(str(context)))
        assert isinstance(loop, uvloop.Loop)
        stream = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n3\r\ntwo\r\n"
        closed = asyncio.Event()

        async def serve(peer: Peer) -> None:
            request = await peer.request()
            while request is not None and b"/stream" not in request:
                await peer.send(OK)
                request = await peer.request()
            await peer.send(stream)
            await peer.until_closed()
            closed.set()

        async with Upstream(serve) as upstream, upstream_client() as client:
            bodies = b"".join([await get(client, upstream.url()) for _ in range(3)])
            response = await client.request("GET", upstream.url("/stream"), {}, b"")
            pieces: list[bytes] = []
            streaming = asyncio.Event()

            async def consume() -> None:
                async for piece in response.chunks():
                    pieces.append(piece)
                    streaming.set()

            consumer = asyncio.create_task(consume())
            async with asyncio.timeout(5):
                await streaming.wait()
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            response.release()
            async with asyncio.timeout(5):
                await closed.wait()
            return bodies, pieces, upstream.accepted, closed.is_set()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        bodies, pieces, accepted, closed = runner.run(scenario())

    assert bodies == b"ok" * 3
    assert b"".join(pieces) in (b"one", b"onetwo")
    assert accepted == 1
    assert closed
    assert complaints == []
