"""Real PostgreSQL and NATS JetStream for the test suite.

The servers at the usual local ports are used when they answer. Otherwise
``scripts/test-infra`` (called by ``make test``) has started throwaway ones and exported
their addresses. Every test session works in a database and a stream of its own, with
random names, so sessions on one machine do not see each other.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ADMIN_DSN = os.environ.get("BYOM_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
NATS_URL = os.environ.get("BYOM_TEST_NATS", "nats://127.0.0.1:4222")


def random_suffix() -> str:
    return secrets.token_hex(4)


def create_database(name: str) -> str:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class NatsServer:
    """A JetStream server of this module's own, so the test may stop and restart it."""

    def __init__(self, store: Path) -> None:
        self.port = free_port()
        self.store = store
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = Path(sys.executable).parent / "nats-server"
        self.process = subprocess.Popen(
            [str(binary), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)


def _ephemeral_ports_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_EPHEMERAL_START = _ephemeral_ports_start()
_handed_out: set[int] = set()


def free_port() -> int:
    """A port nobody listens on, for a server started a moment later.

    Taken below the kernel's ephemeral range: a port the kernel picks itself is an
    ephemeral one, and between this check and the server's own bind any outgoing
    connection on the machine may be given it (the server then fails to start).
    """
    rng = secrets.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20000, _EPHEMERAL_START)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")
