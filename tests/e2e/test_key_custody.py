"""Key custody through the whole gateway: rotating, disconnecting and rewrapping while members call.

The emulator records the bearer of every call, so these tests see which key the proxy
actually sent, and a key removed from the emulator's accepted keys proves the proxy
stopped using it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import nats
import openai
import orjson
import psycopg
import pytest
from nats.js.api import DeliverPolicy

from shared.secrets import ProviderKey
from shared.service_auth import ServiceSigner
from tests.conftest import Infra
from tests.e2e.conftest import OpenAIFor
from tests.e2e.flows import ReadyModel, connect_provider, provider_key, ready_model, visible_models
from tests.emulator import EmulatorState, RecordedRequest, running_emulator
from tests.stack import ROOT, Stack
from tests.support import Workspace, eventually

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "which key is this"}]


@pytest.fixture(scope="module")
async def emulator() -> AsyncIterator[tuple[EmulatorState, str]]:
    """A provider of this module's own: the tests take keys away from it."""
    state = EmulatorState(models=["gpt-alpha", "gpt-beta"])
    async with running_emulator(state) as base_url:
        yield state, base_url


@pytest.fixture
async def ready(
    stack: Stack, workspace: Workspace, emulator: tuple[EmulatorState, str]
) -> ReadyModel:
    return await ready_model(stack, workspace, emulator)


def chat_requests(state: EmulatorState, since: int) -> list[RecordedRequest]:
    """Chat calls the provider received after the first ``since`` requests of any kind."""
    return [r for r in state.requests[since:] if r.path.endswith("/chat/completions")]


async def call(sdk: openai.AsyncOpenAI, ready: ReadyModel) -> str | None:
    answer = await sdk.chat.completions.create(model=ready.model["name"], messages=MESSAGES)
    return answer.choices[0].message.content


async def rotate(ws: Workspace, connection_id: str, key: str) -> httpx.Response:
    return await ws.call(
        "PUT", f"/keyvault/v1/connections/{connection_id}/key", json={"api_key": key}
    )


async def query(database_url: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(sql, params)  # type: ignore[arg-type]
        return await cursor.fetchall()


async def event_types(database_url: str, schema: str, stream_id: str) -> list[str]:
    rows = await query(
        database_url,
        f"SELECT type FROM {schema}.events WHERE stream_id = %s ORDER BY position",  # noqa: S608
        stream_id,
    )
    return [row[0] for row in rows]


async def published_types(stack: Stack, connection_id: str) -> list[str]:
    """Types of the keyvault events about one connection that are on the stream."""
    nc = await nats.connect(stack.env["BYOM_NATS_URL"])
    found: list[str] = []
    try:
        sub = await nc.jetstream().subscribe(
            f"{stack.env['BYOM_SUBJECT_PREFIX']}.keyvault.provider.>",
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )
        try:
            while True:
                envelope = orjson.loads((await sub.next_msg(timeout=0.5)).data)
                if envelope["data"].get("connection_id") == connection_id:
                    found.append(envelope["type"])
        except nats.errors.TimeoutError:
            pass
    finally:
        await nc.close()
    return found


# Rotation


async def test_after_a_rotation_the_proxy_sends_the_new_key(
    openai_for: OpenAIFor,
    ready: ReadyModel,
    emulator: tuple[EmulatorState, str],
) -> None:
    """Once the old key is rotated out and the provider stops accepting it, the proxy's calls carry the new key within a second."""
    state = emulator[0]
    sdk = openai_for(ready.token)
    assert await call(sdk, ready)
    assert state.requests_to("/chat/completions")[-1].bearer == ready.key
    new_key = provider_key()
    state.keys.add(new_key)

    rotated = await rotate(ready.workspace, ready.connection["id"], new_key)
    state.keys.discard(ready.key)
    rotated_at = time.monotonic()

    async def answered_with_new_key() -> bool:
        try:
            await call(sdk, ready)
        except openai.APIStatusError:
            return False
        return True

    await eventually(answered_with_new_key, within=5, interval=0.02)
    switched_after = time.monotonic() - rotated_at
    before_follow_up = len(state.requests)
    for _ in range(5):
        assert await call(sdk, ready)
    follow_up = chat_requests(state, since=before_follow_up)

    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["masked_key"] == ProviderKey(new_key).masked
    assert switched_after < 1.0
    assert [r.bearer for r in follow_up] == [new_key] * 5
    assert state.requests_to("/chat/completions")[-6].bearer == new_key


async def test_admins_see_which_service_read_which_key_version(
    openai_for: OpenAIFor,
    ready: ReadyModel,
    emulator: tuple[EmulatorState, str],
) -> None:
    """After a call and a rotation, the connection shows the proxy and the catalog reading version 1, then version 2."""
    sdk = openai_for(ready.token)
    await call(sdk, ready)
    new_key = provider_key()
    emulator[0].keys.add(new_key)
    assert (await rotate(ready.workspace, ready.connection["id"], new_key)).status_code == 200
    path = f"/keyvault/v1/connections/{ready.connection['id']}"

    async def both_read_version_2() -> list[tuple[str, int]] | None:
        await call(sdk, ready)
        shown = await ready.workspace.ok("GET", path)
        seen = [(r["reader"], r["secret_version"]) for r in shown["reads"]]
        return seen if {("proxy", 2), ("catalog", 2)} <= set(seen) else None

    seen = await eventually(both_read_version_2, within=10, interval=0.1)

    assert seen == [("catalog", 2), ("proxy", 2), ("catalog", 1), ("proxy", 1)]


async def test_a_rejected_rotation_keeps_the_old_key_working_and_says_why(
    openai_for: OpenAIFor,
    stack: Stack,
    ready: ReadyModel,
    emulator: tuple[EmulatorState, str],
    infra: Infra,
) -> None:
    """A new key the provider refuses is 400 with the provider's reason; the proxy keeps calling with the old key."""
    state = emulator[0]
    sdk = openai_for(ready.token)
    await call(sdk, ready)
    wrong = provider_key()  # never added to the emulator's keys

    refused = await rotate(ready.workspace, ready.connection["id"], wrong)
    await asyncio.sleep(0.5)  # time for any event the refusal caused to reach the proxy
    start = len(state.requests)
    for _ in range(3):
        assert await call(sdk, ready)
    shown = await ready.workspace.ok("GET", f"/keyvault/v1/connections/{ready.connection['id']}")
    history = await event_types(
        infra.database_url, "keyvault", f"connection-{ready.connection['id']}"
    )

    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "key_rejected"
    assert error["message"].startswith("openai-compatible rejected the key")
    assert "Incorrect API key provided" in error["message"]
    assert not any(wrong[i : i + 8] in refused.text for i in range(len(wrong) - 7))
    assert [r.bearer for r in chat_requests(state, since=start)] == [ready.key] * 3
    assert (shown["masked_key"], shown["secret_version"]) == (ready.connection["masked_key"], 1)
    assert history == ["byom.provider.connected.v1", "byom.provider.verification_failed.v1"]


# Disconnection


async def test_disconnecting_makes_the_models_unusable_at_once_and_keeps_the_history(
    openai_for: OpenAIFor,
    stack: Stack,
    ready: ReadyModel,
    emulator: tuple[EmulatorState, str],
    infra: Infra,
) -> None:
    """After a disconnect the model is 404 at the proxy within a second and unlisted; catalog and the event log keep the connection's history."""
    sdk = openai_for(ready.token)
    assert await call(sdk, ready)
    ws, connection_id = ready.workspace, ready.connection["id"]

    await ws.ok("DELETE", f"/keyvault/v1/connections/{connection_id}")
    disconnected_at = time.monotonic()

    async def not_found() -> openai.NotFoundError | None:
        try:
            await call(sdk, ready)
        except openai.NotFoundError as error:
            return error
        return None

    refusal = await eventually(not_found, within=5, interval=0.01)
    refused_after = time.monotonic() - disconnected_at
    upstream_calls = len(emulator[0].requests_to("/chat/completions"))
    with pytest.raises(openai.NotFoundError):
        await call(sdk, ready)

    async def catalog_marked() -> dict[str, Any] | None:
        shown = await ws.ok("GET", f"/catalog/v1/connections/{connection_id}")
        return shown if shown["status"] == "disconnected" else None

    catalog_connection = await eventually(catalog_marked, within=10)
    catalog_models = await ws.ok(
        "GET", "/catalog/v1/models", params={"connection_id": connection_id}
    )
    keyvault_connection = await ws.ok("GET", f"/keyvault/v1/connections/{connection_id}")
    signer = ServiceSigner(stack.env["BYOM_SERVICE_SECRET"].encode())
    async with httpx.AsyncClient(base_url=stack.url("keyvault")) as http:
        key_read = await http.get(
            f"/keyvault/internal/v1/connections/{connection_id}/key",
            headers={"Authorization": f"Bearer {signer.mint('proxy', 'keyvault')}"},
        )
    keyvault_history = await event_types(
        infra.database_url, "keyvault", f"connection-{connection_id}"
    )
    catalog_history = await query(
        infra.database_url,
        "SELECT type FROM catalog.events WHERE envelope->'data'->>'connection_id' = %s",
        connection_id,
    )

    assert refused_after < 1.0
    assert refusal.body["code"] == "model_not_found"  # type: ignore[index]
    assert len(emulator[0].requests_to("/chat/completions")) == upstream_calls
    assert ready.model["name"] not in await visible_models(stack, ready.token)
    assert catalog_connection["name"] == ready.connection["name"]
    assert {m["name"] for m in catalog_models["data"]} >= {ready.model["name"]}
    assert keyvault_connection["status"] == "disconnected"
    assert keyvault_connection["masked_key"] == ready.connection["masked_key"]
    assert key_read.status_code == 404
    assert keyvault_history == ["byom.provider.connected.v1", "byom.provider.disconnected.v1"]
    assert await eventually(
        lambda: _all_published(stack, connection_id, keyvault_history), within=10
    )
    assert {row[0] for row in catalog_history} >= {
        "byom.model.discovered.v1",
        "byom.model.enabled.v1",
    }


async def _all_published(stack: Stack, connection_id: str, expected: list[str]) -> bool:
    return await published_types(stack, connection_id) == expected


# Rewrapping under load


def rewrap_command(stack: Stack, active: str) -> subprocess.CompletedProcess[bytes]:
    """``python -m services.keyvault rewrap`` with the stack's keyring, ``active`` being active."""
    keyring = orjson.dumps({**orjson.loads(stack.env["BYOM_KEYRING"]), "active": active}).decode()
    return subprocess.run(
        [sys.executable, "-m", "services.keyvault", "rewrap"],
        cwd=ROOT,
        env={**os.environ, **stack.env, "BYOM_KEYRING": keyring},
        capture_output=True,
        timeout=60,
        check=False,
    )


class Load:
    """Members calling, the catalog re-listing and keys being read and rotated, until stopped."""

    def __init__(self, stack: Stack, ready: ReadyModel, sdk: openai.AsyncOpenAI) -> None:
        self.stack, self.ready, self.sdk = stack, ready, sdk
        self.keys: dict[str, str] = {}
        self.outcomes: list[tuple[float, str, str]] = []
        self._stop = asyncio.Event()
        self._signer = ServiceSigner(stack.env["BYOM_SERVICE_SECRET"].encode())

    def stop(self) -> None:
        self._stop.set()

    def note(self, kind: str, outcome: str) -> None:
        self.outcomes.append((time.monotonic(), kind, outcome))

    def failures(self) -> list[tuple[float, str, str]]:
        return [o for o in self.outcomes if o[2] != "ok"]

    def during(self, start: float, end: float, kind: str) -> int:
        return sum(1 for at, k, outcome in self.outcomes if start <= at <= end and k == kind)

    async def calls(self, streamed: bool) -> None:
        while not self._stop.is_set():
            try:
                if streamed:
                    stream = await self.sdk.chat.completions.create(
                        model=self.ready.model["name"], messages=MESSAGES, stream=True
                    )
                    text = "".join(
                        [c.choices[0].delta.content or "" async for c in stream if c.choices]
                    )
                else:
                    text = await call(self.sdk, self.ready) or ""
            except openai.APIError as error:
                self.note("stream" if streamed else "chat", f"failed: {error!r}")
            else:
                self.note("stream" if streamed else "chat", "ok" if text else "empty")

    async def reads(self) -> None:
        while not self._stop.is_set():
            await self.read_each_once()

    async def read_each_once(self) -> None:
        """Read every key as the catalog does, and check it is the one the admin gave.

        The connection being rotated is left to the proxy: its key changes under the read.
        """
        rotating = self.ready.connection["id"]
        async with httpx.AsyncClient(base_url=self.stack.url("keyvault"), timeout=10) as http:
            for connection_id, key in list(self.keys.items()):
                if connection_id == rotating:
                    continue
                credential = self._signer.mint("catalog", "keyvault")
                response = await http.get(
                    f"/keyvault/internal/v1/connections/{connection_id}/key",
                    headers={"Authorization": f"Bearer {credential}"},
                )
                right = response.status_code == 200 and response.json()["api_key"] == key
                self.note("read", "ok" if right else f"failed: {response.status_code}")

    async def syncs(self) -> None:
        """The catalog lists the models of each connection, which reads its key each time."""
        while not self._stop.is_set():
            for connection_id in list(self.keys):
                result = await self.ready.workspace.ok(
                    "POST", f"/catalog/v1/connections/{connection_id}/sync"
                )
                self.note("sync", "ok" if result["ok"] else f"failed: {result['reason']}")

    async def rotations(self, emulator: EmulatorState) -> None:
        """Rotate the called connection's key over and over: the proxy keeps fetching it anew."""
        connection_id = self.ready.connection["id"]
        while not self._stop.is_set():
            key = provider_key()
            emulator.keys.add(key)  # old keys stay accepted: a call in flight may carry one
            response = await rotate(self.ready.workspace, connection_id, key)
            self.note("rotate", "ok" if response.status_code == 200 else response.text)
            if response.status_code == 200:
                self.keys[connection_id] = key
            await asyncio.sleep(0.05)


async def test_rewrapping_while_members_call_fails_no_call(
    openai_for: OpenAIFor,
    stack: Stack,
    ready: ReadyModel,
    emulator: tuple[EmulatorState, str],
    infra: Infra,
) -> None:
    """The rewrap command and the operator's rewrap both run while calls, key reads, syncs and rotations go on: nothing fails, every key still opens."""
    state = emulator[0]
    load = Load(stack, ready, openai_for(ready.token))
    load.keys[ready.connection["id"]] = ready.key
    for _ in range(20):
        key = provider_key()
        connected = await connect_provider(ready.workspace, emulator, key)
        load.keys[connected["id"]] = key
    start_position = (
        await query(infra.database_url, "SELECT coalesce(max(position), 0) FROM keyvault.events")
    )[0][0]
    workers = [
        asyncio.create_task(load.calls(streamed=False)),
        asyncio.create_task(load.calls(streamed=True)),
        asyncio.create_task(load.reads()),
        asyncio.create_task(load.syncs()),
        asyncio.create_task(load.rotations(state)),
    ]
    try:
        await asyncio.sleep(0.5)
        began = time.monotonic()
        command = await asyncio.to_thread(rewrap_command, stack, "1")
        async with httpx.AsyncClient(base_url=stack.url("keyvault"), timeout=60) as http:
            over_http = await http.post(
                "/keyvault/v1/keyring/rewrap",
                headers={"Authorization": f"Bearer {stack.operator_token}"},
            )
        ended = time.monotonic()
        await asyncio.sleep(0.5)
    finally:
        load.stop()
        await asyncio.gather(*workers)

    recorded = await query(
        infra.database_url,
        "SELECT envelope FROM keyvault.events"
        " WHERE type = 'byom.keyring.secrets_rewrapped.v1' AND position > %s ORDER BY position",
        start_position,
    )
    left_behind = await query(
        infra.database_url,
        "SELECT count(*) FROM keyvault.connection_secrets"
        " WHERE wrapped_data_key IS NOT NULL AND keyring_version <> '2'",
    )

    assert command.returncode == 0, command.stderr.decode()[-2000:]
    assert over_http.status_code == 200, over_http.text
    assert load.failures() == []
    for kind in ("chat", "stream", "read", "sync", "rotate"):
        assert load.during(began, ended, kind) > 0, kind
    events = [row[0]["data"] for row in recorded]
    assert [(e["keyring_version"], e["via"]) for e in events] == [("1", "command"), ("2", "api")]
    assert events[0]["rewrapped"] >= len(load.keys) - 1
    assert events[1]["rewrapped"] == over_http.json()["rewrapped"] >= len(load.keys) - 1
    assert left_behind == [(0,)]
    load.outcomes.clear()
    await load.read_each_once()
    assert len(load.outcomes) == len(load.keys) - 1
    assert load.failures() == []
