"""A proxy that has lost its event feed stops serving, says so, and recovers by itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Infra
from tests.e2e.flows import ready_model
from tests.emulator import EmulatorState
from tests.infra import NatsServer
from tests.stack import Stack, running_stack
from tests.support import Workspace, eventually

pytestmark = pytest.mark.e2e

STALE_AFTER_SECONDS = 2


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(Path(tmp_path_factory.mktemp("nats-store")))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(
    infra: Infra, nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with running_stack(
        database_url=infra.database_url,
        nats_url=nats_server.url,
        stream=infra.stream,
        subject_prefix=infra.prefix,
        log_dir=Path(tmp_path_factory.mktemp("feed-loss-logs")),
        extra_env={"proxy": {"BYOM_FEED_STALE_AFTER_SECONDS": str(STALE_AFTER_SECONDS)}},
    ) as running:
        yield running


async def call(stack: Stack, token: str, model: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.openai_base_url, timeout=30) as client:
        return await client.post(
            "/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "still there?"}]},
            headers={"Authorization": f"Bearer {token}"},
        )


async def test_feed_loss_stops_serving_and_recovery_resumes_with_changes_made_meanwhile(
    stack: Stack,
    nats_server: NatsServer,
    workspace: Workspace,
    emulator: tuple[EmulatorState, str],
) -> None:
    """Without NATS past the bound the proxy answers 503 and is not ready; when NATS returns it serves again and applies the revocation made during the outage."""
    ready = await ready_model(stack, workspace, emulator)
    name = ready.model["name"]
    assert (await call(stack, ready.token, name)).status_code == 200

    nats_server.stop()

    async def refusing() -> httpx.Response | None:
        response = await call(stack, ready.token, name)
        return response if response.status_code == 503 else None

    refused = await eventually(refusing, within=20, interval=0.2)
    assert refused.json()["error"]["code"] == "gateway_feed_lost"
    async with httpx.AsyncClient(base_url=stack.url("proxy")) as client:
        probe = await client.get("/proxy/readyz")
    assert probe.status_code == 503
    assert probe.json()["status"] == "feed_lost"

    # An admin revokes access while the feed is down: access commits it and waits to publish.
    rules = await workspace.ok("GET", f"/access/v1/models/{ready.model['id']}/rules")
    for rule in rules["data"]:
        await workspace.ok("DELETE", f"/access/v1/models/{ready.model['id']}/rules/{rule['id']}")

    nats_server.start()

    async def revoked_after_recovery() -> bool:
        return (await call(stack, ready.token, name)).status_code == 403

    await eventually(revoked_after_recovery, within=40, interval=0.25)
    async with httpx.AsyncClient(base_url=stack.url("proxy")) as client:
        assert (await client.get("/proxy/readyz")).status_code == 200
    assert "feed_lost" in stack.logs() and "feed_recovered" in stack.logs()
