"""A stream's end is accounted for however the client leaves, even before the first piece."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from services.proxy.gateway import EventStream


async def test_a_client_leaving_while_the_head_waits_to_go_out_still_finishes_the_stream() -> None:
    """The head's write is held up (a full socket buffer) and the client leaves: the pieces were never asked for, yet finish runs."""
    started = False
    finished: list[bool] = []
    left = asyncio.Event()

    async def pieces() -> AsyncGenerator[bytes, None]:
        nonlocal started
        started = True
        yield b"data: never\n\n"

    async def receive() -> dict[str, Any]:
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        # As the server does when its write buffer is over the high-water mark.
        left.set()
        await asyncio.sleep(10)

    async with asyncio.timeout(5):
        await EventStream(pieces(), finished.append)({"type": "http"}, receive, send)

    assert not started
    assert finished == [False]


async def test_a_stream_sent_whole_finishes_as_completed() -> None:
    sent: list[dict[str, Any]] = []
    finished: list[bool] = []

    async def pieces() -> AsyncGenerator[bytes, None]:
        yield b"data: one\n\n"
        yield b"data: two\n\n"

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await EventStream(pieces(), finished.append)({"type": "http"}, receive, send)

    assert [m.get("body") for m in sent] == [None, b"data: one\n\n", b"data: two\n\n", b""]
    assert finished == [True]


async def test_a_server_stopping_is_not_taken_for_the_client_leaving() -> None:
    """A cancellation from elsewhere goes on up; the stream still finishes, as cut off."""
    finished: list[bool] = []

    async def pieces() -> AsyncGenerator[bytes, None]:
        await asyncio.sleep(10)
        yield b""

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        return None

    task = asyncio.ensure_future(
        EventStream(pieces(), finished.append)({"type": "http"}, receive, send)
    )
    await asyncio.sleep(0.05)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("the server's cancellation was swallowed")
    assert finished == [False]
