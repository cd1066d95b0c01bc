"""The local edge router of ``make run``: one address, and nothing shared between callers.

A service behind it is played by a small app on a loopback port that sets cookies and
echoes the cookies it was sent; the router is called in-process.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scripts import run_local
from tests.emulator import running_asgi


async def _sign_in(request: Request) -> JSONResponse:
    answer = JSONResponse({"signed_in": True})
    answer.set_cookie("session", "owner-session", httponly=True, samesite="strict")
    answer.set_cookie("csrf", "owner-csrf", httponly=True, samesite="strict")
    return answer


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"cookie": request.headers.get("cookie"), "path": request.url.path})


SERVICE = Starlette(
    routes=[
        Route("/console/sign-in", _sign_in, methods=["POST"]),
        Route("/{rest:path}", _echo, methods=["GET"]),
    ]
)


@pytest.fixture
async def edge(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    async with running_asgi(SERVICE) as root:
        port = int(root.rsplit(":", 1)[1])
        for name in run_local.PORTS:
            monkeypatch.setitem(run_local.PORTS, name, port)
        async with run_local.edge_client() as forwarding:
            transport = httpx.ASGITransport(app=run_local.edge_app(forwarding))
            async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
                yield client


async def test_a_cookie_set_for_one_caller_never_reaches_another(edge: httpx.AsyncClient) -> None:
    signed_in = await edge.post("/console/sign-in")

    assert signed_in.headers.get_list("set-cookie")[0].startswith("session=owner-session")
    assert len(signed_in.headers.get_list("set-cookie")) == 2
    edge.cookies.clear()  # the next caller is someone else, with no cookie of their own
    stranger = await edge.get("/console/people")
    assert stranger.json() == {"cookie": None, "path": "/console/people"}


async def test_a_callers_own_cookie_is_forwarded(edge: httpx.AsyncClient) -> None:
    mine = await edge.get("/console/tokens", headers={"Cookie": "session=mine"})

    assert mine.json()["cookie"] == "session=mine"


@pytest.mark.parametrize(
    "path",
    [
        "/proxy/metrics",
        "/access/healthz",
        "/catalog/readyz",
        "/keyvault/internal/connections/x/key",
    ],
)
async def test_probes_metrics_and_internal_routes_stay_private(
    edge: httpx.AsyncClient, path: str
) -> None:
    assert (await edge.get(path)).status_code == 404


async def test_public_routes_and_openapi_documents_are_served_once_each(
    edge: httpx.AsyncClient,
) -> None:
    for path in ("/access/openapi.json", "/catalog/v1/models", "/v1/models"):
        answer = await edge.get(path)
        assert answer.json()["path"] == path
        assert len(answer.headers.get_list("date")) <= 1
        assert len(answer.headers.get_list("server")) == 0


def test_a_port_is_busy_while_listened_on_not_while_its_old_connections_wait_out() -> None:
    """A gateway stopped a moment ago leaves connections in TIME_WAIT; make run may start again."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            # The server's side closes first, so its end of the connection waits out TIME_WAIT.
            accepted.close()
            client.recv(1)
        assert not run_local._port_free(port)

    assert run_local._port_free(port)


def test_a_service_that_stops_at_start_is_reported_with_its_own_reason(tmp_path: Path) -> None:
    """make run names why a service stopped (a database that does not exist, say), not a timeout."""
    log = tmp_path / "access.log"
    traceback = (
        'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
        'sqlalchemy.exc.OperationalError: FATAL:  database "nope" does not exist\n'
        "(Background on this error at: https://sqlalche.me/e/21/e3q8)"
    )
    log.write_text(
        "\n".join(
            orjson.dumps(record).decode()
            for record in (
                {"event": "Waiting for application startup.", "level": "info"},
                {"event": traceback, "level": "error"},
                {"event": "Application startup failed. Exiting.", "level": "error"},
            )
        )
    )
    stopped = subprocess.Popen([sys.executable, "-c", "pass"])
    stopped.wait()

    with pytest.raises(SystemExit) as exit_:
        run_local.wait_healthy("http://127.0.0.1:9/access/healthz", stopped, log, timeout=5)

    assert 'database "nope" does not exist' in str(exit_.value)
