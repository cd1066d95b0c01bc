"""The proxy with several worker processes on one port: each follows the events itself.

A request lands on whichever worker the kernel hands the connection to, so every worker
must know of a grant, and of its revocation, on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import httpx
import pytest

from tests.conftest import Infra
from tests.e2e.flows import ready_model
from tests.emulator import EmulatorState
from tests.stack import Stack
from tests.support import Workspace, eventually

pytestmark = pytest.mark.e2e

WORKERS: Final = 2
CALLS: Final = 24


@pytest.fixture(scope="module")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with infra.stack(
        log_dir=Path(tmp_path_factory.mktemp("proxy-workers-logs")),
        extra_env={"proxy": {"BYOM_WORKERS": str(WORKERS)}},
    ) as running:
        yield running


async def _statuses(stack: Stack, token: str, model: str) -> list[int]:
    """One fresh connection per call, so the calls spread over the workers."""

    async def call() -> int:
        async with httpx.AsyncClient(base_url=stack.openai_base_url, timeout=10) as client:
            response = await client.post(
                "/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
                headers={"Authorization": f"Bearer {token}"},
            )
            return response.status_code

    return list(await asyncio.gather(*(call() for _ in range(CALLS))))


def _workers(pid: int) -> list[int]:
    """The worker processes uvicorn spawned (not multiprocessing's resource tracker)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
    return found


def test_the_proxy_runs_the_configured_number_of_workers(stack: Stack) -> None:
    process = stack.services["proxy"].process
    assert process is not None
    assert len(_workers(process.pid)) == WORKERS


async def test_every_worker_serves_grants_and_honours_revocation(
    stack: Stack, workspace: Workspace, emulator: tuple[EmulatorState, str]
) -> None:
    ready = await ready_model(stack, workspace, emulator)
    model = ready.model["name"]

    # A worker that had missed the grant would answer 404 to some of these.
    async def all_served() -> bool:
        return set(await _statuses(stack, ready.token, model)) == {200}

    await eventually(all_served, within=10)

    tokens = await workspace.ok("GET", f"/access/v1/members/{ready.member['id']}/tokens")
    await workspace.ok("DELETE", f"/access/v1/tokens/{tokens['data'][0]['id']}")

    async def all_refused() -> bool:
        return set(await _statuses(stack, ready.token, model)) == {401}

    await eventually(all_refused, within=10)
