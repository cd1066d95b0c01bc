"""Streamed calls timed from the client's side, with as little client as there can be.

wrk cannot see inside a response, so streams are timed by this small client: raw
keep-alive connections on uvloop, the request written as prepared bytes, the answer read
as it comes without an HTTP library. It notes when the first read holding the first
token arrives (time to first token) and when the stream's last chunk does, and prints
both lists as JSON. It runs as a process of its own, so that the bench's own work (the
usage counter on the stream) does not slow it down, and it is the same client for the
direct and the proxied path.

Only what the bench's stand-ins and the proxy answer is understood: a chunked stream,
or an error with a Content-Length.

    python bench/streamclient.py --url http://127.0.0.1:9100/v1/chat/completions \\
        --body '{"model": "m", "stream": true, ...}' --header 'Authorization: Bearer t' \\
        --marker '"content"' --concurrency 10 --total 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from urllib.parse import urlsplit

import orjson
import uvloop

_LAST_CHUNK = b"\r\n0\r\n\r\n"


class Timings:
    def __init__(self, total: int) -> None:
        self.left = total
        self.first: list[float] = []
        self.whole: list[float] = []
        self.errors = 0


async def connection(host: str, port: int, request: bytes, marker: bytes, t: Timings) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while t.left > 0:
            t.left -= 1
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if head[9:12] != b"200":
                t.errors += 1
                await reader.readexactly(_content_length(head))
                continue

            first = None
            tail = b""
            while True:
                data = await reader.read(1 << 18)
                if not data:
                    raise ConnectionError("the server closed the connection mid-stream")
                if first is None and marker in data:
                    first = time.perf_counter()
                tail = (tail + data)[-len(_LAST_CHUNK) :]
                if tail == _LAST_CHUNK:
                    break
            ended = time.perf_counter()
            if first is None:
                t.errors += 1
                continue
            t.first.append((first - started) * 1000)
            t.whole.append((ended - started) * 1000)
    finally:
        writer.close()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


async def run(args: argparse.Namespace) -> Timings:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    body = args.body.encode()
    headers = "".join(f"{h}\r\n" for h in args.header)
    request = (
        f"POST {url.path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"{headers}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    timings = Timings(args.total)
    await asyncio.gather(
        *(
            connection(host, port, request, args.marker.encode(), timings)
            for _ in range(min(args.concurrency, args.total))
        )
    )
    return timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--marker", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--total", type=int, default=100)
    parser.add_argument("--cpus", help="the cores to run on, comma-separated (default: any)")
    args = parser.parse_args()
    if args.cpus:
        os.sched_setaffinity(0, {int(cpu) for cpu in args.cpus.split(",")})
    timings = uvloop.run(run(args))
    sys.stdout.write(
        orjson.dumps(
            {"first": timings.first, "whole": timings.whole, "errors": timings.errors}
        ).decode()
    )


if __name__ == "__main__":
    main()
