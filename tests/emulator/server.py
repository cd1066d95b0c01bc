"""Run the emulator inside a test's event loop, on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import uvicorn
from starlette.types import ASGIApp

from tests.emulator.app import create_app
from tests.emulator.state import EmulatorState

_START_TIMEOUT = 10.0
_SHUTDOWN_GRACE_SECONDS = 5


class _EmbeddedServer(uvicorn.Server):
    # The test runner owns the process's signal handlers; uvicorn would take over Ctrl-C.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def running_emulator(state: EmulatorState, *, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve ``state`` while the block runs; yield its base URL, ``http://<host>:<port>/v1``."""
    async with running_asgi(create_app(state), host=host) as root:
        yield root + "/v1"


@contextlib.asynccontextmanager
async def running_asgi(app: ASGIApp, *, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve any ASGI app on a free port while the block runs; yield ``http://<host>:<port>``."""
    listener = _bind_free_port(host)
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="none",
        timeout_graceful_shutdown=_SHUTDOWN_GRACE_SECONDS,
    )
    server = _EmbeddedServer(config)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        await _wait_until_started(server, serving)
        yield _root_url(listener)
    finally:
        server.should_exit = True
        await serving
        listener.close()


# Where each provider kind's API sits on the emulator, relative to its root.
_PROVIDER_PATHS = {
    "anthropic": "/anthropic/v1",
    "google": "/google/v1beta",
    "bedrock": "/bedrock",
}


def provider_base_url(base_url: str, kind: str) -> str:
    """The base URL a connection of ``kind`` uses on the emulator serving at ``base_url``.

    Every OpenAI-style kind (openai, openai-compatible, xai, openrouter, groq, deepseek)
    shares the ``/v1`` routes.
    """
    root = base_url.removesuffix("/v1")
    return root + _PROVIDER_PATHS.get(kind, "/v1")


def _bind_free_port(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind((host, 0))
    return listener


async def _wait_until_started(server: uvicorn.Server, serving: asyncio.Task[None]) -> None:
    async with asyncio.timeout(_START_TIMEOUT):
        while not server.started:
            if serving.done():
                await serving
                raise RuntimeError("the emulator stopped while starting")

            await asyncio.sleep(0.01)


def _root_url(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    if listener.family == socket.AF_INET6:
        host = f"[{host}]"

    return f"http://{host}:{port}"
