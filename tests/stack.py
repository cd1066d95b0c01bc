"""Start the real services as separate processes, the way they run in production.

Each service is ``python -m services.<name>`` on a free 127.0.0.1 port, against the test
session's own PostgreSQL database and JetStream stream. Their logs go to files the tests
can read (the key-leak hunts search them). Nothing here stands in for our own code.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from tests.infra import free_port

ROOT = Path(__file__).resolve().parent.parent
ALL_SERVICES = ("access", "keyvault", "catalog", "proxy")
# Started only by the tests that ask for it: the console's browser tests.
OPTIONAL_SERVICES = ("console",)
_HEALTH_PATHS = {
    "access": "/access/healthz",
    "keyvault": "/keyvault/healthz",
    "catalog": "/catalog/healthz",
    "proxy": "/proxy/healthz",
    "console": "/console/healthz",
}


def test_keyring() -> str:
    """A keyring with two entries, the newer active, as an operator's Secret would hold it."""
    keys = {str(v): base64.b64encode(secrets.token_bytes(32)).decode() for v in (1, 2)}
    fingerprint_key = base64.b64encode(secrets.token_bytes(32)).decode()
    return orjson.dumps({"active": "2", "keys": keys, "fingerprint_key": fingerprint_key}).decode()


@dataclass
class ServiceProcess:
    name: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Stack:
    """The running services and what a test needs to talk to them."""

    env: dict[str, str]
    services: dict[str, ServiceProcess]
    operator_token: str
    log_dir: Path
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return self.services[service].url

    @property
    def openai_base_url(self) -> str:
        return f"{self.url('proxy')}/v1"

    def logs(self) -> str:
        """Everything every service has logged so far."""
        return "\n".join(p.read_text(errors="replace") for p in self.log_dir.glob("*.log"))

    def spans(self) -> list[dict[str, object]]:
        """Every span every service has finished so far."""
        return [
            orjson.loads(line)
            for path in self.log_dir.glob("*.spans.jsonl")
            for line in path.read_bytes().splitlines()
            if line
        ]

    def start(self, name: str) -> None:
        service = self.services[name]
        env = {
            **os.environ,
            **self.env,
            "BYOM_TRACE_FILE": str(self.log_dir / f"{name}.spans.jsonl"),
            **self.extra_env.get(name, {}),
        }
        # The child keeps its own copy of the descriptor; ours is closed right away.
        with service.log_path.open("ab") as log_file:
            service.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}", "--port", str(service.port)],
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        self._wait_healthy(service)

    def stop(self, name: str, *, kill: bool = False) -> None:
        process = self.services[name].process
        if process is None or process.poll() is not None:
            return

        if kill:
            process.kill()
        else:
            process.terminate()
        process.wait(timeout=30)

    def _wait_healthy(self, service: ServiceProcess, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        url = service.url + _HEALTH_PATHS[service.name]
        while time.monotonic() < deadline:
            if service.process is not None and service.process.poll() is not None:
                raise RuntimeError(
                    f"{service.name} exited at start:\n{service.log_path.read_text()[-4000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(
            f"{service.name} did not become healthy:\n{service.log_path.read_text()[-4000:]}"
        )


@contextlib.contextmanager
def running_stack(
    *,
    database_url: str,
    nats_url: str,
    stream: str,
    subject_prefix: str,
    log_dir: Path,
    services: Sequence[str] = ALL_SERVICES,
    extra_env: dict[str, dict[str, str]] | None = None,
) -> Iterator[Stack]:
    ports = {name: free_port() for name in (*ALL_SERVICES, *OPTIONAL_SERVICES)}
    operator_token = "byom_op_" + secrets.token_urlsafe(24)
    env = {
        "BYOM_ENVIRONMENT": "test",
        "BYOM_DATABASE_URL": database_url,
        "BYOM_NATS_URL": nats_url,
        "BYOM_NATS_STREAM": stream,
        "BYOM_SUBJECT_PREFIX": subject_prefix,
        "BYOM_SERVICE_SECRET": secrets.token_urlsafe(48),
        "BYOM_KEYRING": test_keyring(),
        "BYOM_OPERATOR_TOKEN": operator_token,
        "BYOM_ACCESS_URL": f"http://127.0.0.1:{ports['access']}",
        "BYOM_KEYVAULT_URL": f"http://127.0.0.1:{ports['keyvault']}",
        "BYOM_CATALOG_URL": f"http://127.0.0.1:{ports['catalog']}",
        "BYOM_PROXY_URL": f"http://127.0.0.1:{ports['proxy']}",
        "BYOM_CONSOLE_SECRET": secrets.token_urlsafe(48),
        "BYOM_RELAY_POLL_SECONDS": "0.2",
        # The emulators listen on loopback, which keyvault refuses unless allowed.
        "BYOM_ALLOWED_PROVIDER_HOSTS": "127.0.0.1",
        "BYOM_CONSUMER_ACK_WAIT_SECONDS": "5",
        "BYOM_LOG_JSON": "true",
        "BYOM_LOG_LEVEL": "DEBUG",
    }
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(
        env=env,
        services={
            name: ServiceProcess(name, ports[name], log_dir / f"{name}.log") for name in services
        },
        operator_token=operator_token,
        log_dir=log_dir,
        extra_env=extra_env or {},
    )
    try:
        for name in services:
            stack.start(name)
        yield stack
    finally:
        for name in reversed(list(services)):
            stack.stop(name)
