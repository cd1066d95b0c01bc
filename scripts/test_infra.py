"""Run a command against a real PostgreSQL and a real NATS JetStream.

``python scripts/test_infra.py run -- <command>`` uses the servers at the usual local
ports (127.0.0.1:5432 and 127.0.0.1:4222) when they answer. Otherwise it starts
throwaway ones on free ports in a temporary folder: PostgreSQL from the machine's
binaries (installing Debian's package if none is there), NATS from the nats-server
binary that the project's locked dependencies install. It exports their addresses as
``BYOM_TEST_POSTGRES`` and ``BYOM_TEST_NATS``, runs the command, stops what it started,
and exits with the command's status.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("test_infra")
HERE = Path(__file__).resolve().parent.parent


def answers(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(port):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not start listening on 127.0.0.1:{port}")


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found and shutil.which("apt-get"):
        log.warning("no PostgreSQL binaries here: installing Debian's postgresql package")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True, env=env)
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not running on 127.0.0.1:5432 and cannot be installed")
    return Path(found[-1]).parent


@contextlib.contextmanager
def throwaway_postgres(workdir: Path) -> Iterator[str]:
    bindir = postgres_bin()
    data = workdir / "pg"
    data.mkdir()
    # initdb refuses to run as root; the throwaway cluster belongs to an unprivileged user.
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = "postgres" if _user_exists("postgres") else "nobody"
        shutil.chown(workdir, user)
        shutil.chown(data, user)
        as_user = ["runuser", "-u", user, "--"]
    port = free_port()
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    server = subprocess.Popen(
        [
            *as_user,
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={workdir}",
            "-c",
            "fsync=off",
            "-c",
            "max_connections=300",
        ],
        stdout=(workdir / "postgres.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(port, "PostgreSQL")
        time.sleep(0.5)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        server.terminate()
        server.wait(timeout=30)


@contextlib.contextmanager
def throwaway_nats(workdir: Path) -> Iterator[str]:
    binary = Path(sys.executable).parent / "nats-server"
    if not binary.exists():
        binary = Path(shutil.which("nats-server") or "nats-server")
    port = free_port()
    server = subprocess.Popen(
        [str(binary), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(workdir / "nats")],
        stdout=(workdir / "nats.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(port, "NATS")
        yield f"nats://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="test_infra: %(message)s")
    if len(argv) < 3 or argv[0] != "run" or argv[1] != "--":
        log.error("usage: test_infra.py run -- <command> [args...]")
        return 2

    command = argv[2:]
    env = dict(os.environ)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="byom-infra-")))
        if "BYOM_TEST_POSTGRES" not in env:
            if answers(5432):
                env["BYOM_TEST_POSTGRES"] = "postgresql://postgres@127.0.0.1:5432/postgres"
            else:
                env["BYOM_TEST_POSTGRES"] = stack.enter_context(throwaway_postgres(workdir))
                log.info("started a throwaway PostgreSQL at %s", env["BYOM_TEST_POSTGRES"])
        if "BYOM_TEST_NATS" not in env:
            if answers(4222):
                env["BYOM_TEST_NATS"] = "nats://127.0.0.1:4222"
            else:
                env["BYOM_TEST_NATS"] = stack.enter_context(throwaway_nats(workdir))
                log.info("started a throwaway NATS JetStream at %s", env["BYOM_TEST_NATS"])
        return subprocess.call(command, env=env, cwd=HERE)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
