"""``make demo``: the whole path once, through the public APIs, with nothing but Python.

Starts the gateway with ``scripts/run_local.py`` (SQLite files in a fresh folder, NATS
from the locked wheel, free ports) and the provider emulator, then, as an admin would:
creates a workspace, connects the emulated provider, enables a model, adds a member,
grants the model, issues the member a token; then calls the model with the official
``openai`` SDK as that member, prints the answer and every event the demo produced,
and stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import openai
from nats.js.api import DeliverPolicy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.emulator import EmulatorState, running_emulator  # noqa: E402


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def free_port_block(size: int) -> int:
    """The first of ``size`` consecutive free ports on 127.0.0.1."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + size < 65000 and all(_free(base + i) for i in range(size)):
            return base
    raise RuntimeError("no block of free ports found")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def gateway(run_dir: Path) -> Iterator[tuple[str, str, str]]:
    """The local gateway; yields its base URL, NATS URL and operator token."""
    # Five services (the console included) from the base port, then the edge, then NATS.
    base = free_port_block(7)
    env = {
        **os.environ,
        "BYOM_RUN_DIR": str(run_dir),
        "BYOM_RUN_BASE_PORT": str(base),
        "BYOM_EDGE_PORT": str(base + 5),
        "BYOM_LOCAL_NATS_PORT": str(base + 6),
    }
    env.pop("DATABASE_URL", None)
    env.pop("BYOM_NATS_URL", None)
    runner = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "run_local.py")],
        env=env,
        stdout=(run_dir / "runner.out").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{base + 5}"
    try:
        # The edge keeps probes private, as the Ingress does; a public document says it is up.
        _wait(url + "/proxy/openapi.json", runner, run_dir)
        operator = json.loads((run_dir / "secrets.json").read_text())["operator_token"]
        yield url, f"nats://127.0.0.1:{base + 6}", operator
    finally:
        runner.send_signal(signal.SIGINT)
        try:
            code = runner.wait(timeout=60)
        except subprocess.TimeoutExpired:
            runner.kill()
            raise RuntimeError("the gateway did not stop within 60s of Ctrl-C") from None
        say(f"gateway stopped (exit status {code})")


def _wait(url: str, runner: subprocess.Popen[bytes], run_dir: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if runner.poll() is not None:
            raise RuntimeError((run_dir / "runner.out").read_text()[-3000:])
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the gateway did not come up; see {run_dir}")


class Admin:
    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self._client = client
        self._headers = {"Authorization": f"Bearer {token}"}

    async def __call__(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._client.request(method, path, headers=self._headers, **kwargs)
        if response.is_error:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None


async def until(check: Any, what: str, within: float = 20) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise RuntimeError(f"gave up waiting for {what}")


async def walkthrough(url: str, operator: str, provider_url: str, key: str) -> tuple[str, str]:
    """Everything an admin and a member do; returns the workspace id and the answer."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        created = await Admin(client, operator)(
            "POST",
            "/access/v1/workspaces",
            json={"name": "Demo", "owner_email": "owner@demo.test", "owner_name": "Owner"},
        )
        workspace = created["workspace"]["id"]
        admin = Admin(client, created["token"]["token"])
        say(f"1. workspace {workspace} created; owner token issued (shown once)")

        connection = await admin(
            "POST",
            "/keyvault/v1/connections",
            json={
                "provider": "openai-compatible",
                "name": "emulator",
                "base_url": provider_url,
                "api_key": key,
            },
        )
        say(f"2. provider connected, key kept as {connection['masked_key']}")

        async def listed() -> list[dict[str, Any]]:
            return list((await admin("GET", "/catalog/v1/models"))["data"])

        models = await until(listed, "the catalog to list the models")
        model = models[0]
        await admin("POST", f"/catalog/v1/models/{model['id']}/enable")
        say(f"3. {len(models)} models discovered, all disabled; enabled {model['name']}")

        member = await admin(
            "POST", "/access/v1/members", json={"email": "ada@demo.test", "display_name": "Ada"}
        )

        async def granted() -> Any:
            with contextlib.suppress(RuntimeError):
                return await admin(
                    "POST",
                    f"/access/v1/models/{model['id']}/rules",
                    json={"principal_kind": "user", "principal_id": member["id"]},
                )
            return None

        await until(granted, "access to learn of the model")
        token = (
            await admin("POST", f"/access/v1/members/{member['id']}/tokens", json={"name": "demo"})
        )["token"]
        say(f"4. {model['name']} granted to Ada, who got a gateway token")

        async def visible() -> bool:
            response = await client.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
            return response.status_code == 200 and any(
                m["id"] == model["name"] for m in response.json()["data"]
            )

        await until(visible, "the proxy to learn of the grant")

    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0) as sdk:
        answer = await sdk.chat.completions.create(
            model=model["name"], messages=[{"role": "user", "content": "Hello, gateway!"}]
        )
    text = answer.choices[0].message.content or ""
    say(f"5. Ada called {model['name']} with the openai SDK")
    return workspace, f"{text}  [{answer.usage.total_tokens if answer.usage else 0} tokens]"


async def events_of(nats_url: str, workspace: str) -> AsyncIterator[dict[str, Any]]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        last = (await js.stream_info("BYOM")).state.last_seq
        sub = await js.subscribe("byom.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
        while True:
            msg = await sub.next_msg(timeout=5)
            event = json.loads(msg.data)
            if event.get("workspaceid") == workspace:
                yield event
            if msg.metadata.sequence.stream >= last:
                return
    finally:
        await nc.close()


async def produced(nats_url: str, workspace: str) -> list[dict[str, Any]]:
    """The workspace's events, once the call's usage event (published off the hot path) is in."""

    async def with_usage() -> list[dict[str, Any]] | None:
        events = [event async for event in events_of(nats_url, workspace)]
        return events if any(e["type"].startswith("byom.usage.") for e in events) else None

    return list(await until(with_usage, "the usage event", within=10))


async def main() -> int:
    key = "sk-demo-" + secrets.token_urlsafe(24)
    with (
        tempfile.TemporaryDirectory(prefix="byom-demo-") as folder,
        gateway(Path(folder)) as (
            url,
            nats_url,
            operator,
        ),
    ):
        say(f"gateway running at {url} (SQLite files in {folder})")
        async with running_emulator(
            EmulatorState(keys={key}, models=["gpt-4o-mini", "gpt-4.1"])
        ) as provider_url:
            workspace, answer = await walkthrough(url, operator, provider_url, key)
        say()
        say(f"answer: {answer}")
        say()
        say("events the demo produced, in stream order:")
        for event in await produced(nats_url, workspace):
            say(f"  {event['time'][:23]}  {event['type']:<34} {event['source']}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
