"""A TCP relay in front of the emulator that can reset the connection on demand.

The gateway's provider connection points at the relay, which passes bytes both ways
until a test arms it: then the next request's connection is reset (RST) before any
answer, or just after the first bytes of the answer's body have gone through, so the
gateway sees what a provider's network failing under it looks like. The relay listens
on loopback only and forwards only to the emulator's port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from typing import Literal

Plan = Literal["pass", "reset_before_answer", "reset_mid_answer"]
_HEADER_END = b"\r\n\r\n"


class FlakyLink:
    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self.plan: Plan = "pass"
        self.resets = 0
        self._open: set[asyncio.StreamWriter] = set()

    async def _serve(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        upstream, to_upstream = await asyncio.open_connection("127.0.0.1", self._target_port)
        self._open |= {to_client, to_upstream}
        cut_midway = asyncio.Event()

        async def requests() -> None:
            while data := await client.read(65536):
                plan, self.plan = self.plan, "pass"
                if plan == "reset_before_answer":
                    self._reset(to_client, to_upstream)
                    return
                if plan == "reset_mid_answer":
                    cut_midway.set()
                to_upstream.write(data)
                await to_upstream.drain()
            # The gateway closed its end: so does the relay, which ends the answers too.
            to_upstream.close()

        async def answers() -> None:
            headers_done = False
            while data := await upstream.read(65536):
                to_client.write(data)
                await to_client.drain()
                if not headers_done:
                    end = data.find(_HEADER_END)
                    headers_done = end != -1
                    body_sent = headers_done and end + len(_HEADER_END) < len(data)
                else:
                    body_sent = True
                if cut_midway.is_set() and body_sent:
                    self._reset(to_client, to_upstream)
                    return

        with contextlib.suppress(ConnectionError, OSError):
            await asyncio.gather(requests(), answers())
        self.close(to_client, to_upstream)

    def close(self, *writers: asyncio.StreamWriter) -> None:
        for writer in writers or tuple(self._open):
            writer.close()
            self._open.discard(writer)

    def _reset(self, *writers: asyncio.StreamWriter) -> None:
        self.resets += 1
        for writer in writers:
            sock = writer.get_extra_info("socket")
            # Linger 0: closing sends RST instead of an orderly FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()


@contextlib.asynccontextmanager
async def flaky_link(target_port: int) -> AsyncIterator[tuple[FlakyLink, int]]:
    """A relay to ``127.0.0.1:target_port``; yields it and the loopback port it listens on."""
    link = FlakyLink(target_port)
    server = await asyncio.start_server(link._serve, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    try:
        yield link, port
    finally:
        server.close()
        link.close()
        await server.wait_closed()
