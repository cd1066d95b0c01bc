"""Steps of the admin and member flows that many end-to-end tests take."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import httpx
import nats
import orjson
from nats.js.api import DeliverPolicy

from tests.emulator import EmulatorState
from tests.stack import Stack
from tests.support import Workspace, eventually, unique


def provider_key() -> str:
    return "sk-emu-" + secrets.token_urlsafe(24)


async def connect_provider(
    ws: Workspace, emulator: tuple[EmulatorState, str], key: str
) -> dict[str, Any]:
    state, base_url = emulator
    state.keys.add(key)
    response = await ws.call(
        "POST",
        "/keyvault/v1/connections",
        json={
            "provider": "openai-compatible",
            "name": unique("emu"),
            "base_url": base_url,
            "api_key": key,
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def discovered_models(ws: Workspace, connection_id: str, count: int) -> list[dict[str, Any]]:
    async def listed() -> list[dict[str, Any]] | None:
        body = await ws.ok("GET", "/catalog/v1/models", params={"connection_id": connection_id})
        return body["data"] if len(body["data"]) >= count else None

    return await eventually(listed, within=15)


async def grant_when_known(ws: Workspace, model_id: str, rule: dict[str, Any]) -> dict[str, Any]:
    """Access learns of models from catalog's events; a grant succeeds once it has."""

    async def granted() -> dict[str, Any] | None:
        response = await ws.call("POST", f"/access/v1/models/{model_id}/rules", json=rule)
        if response.status_code == 404:
            return None
        assert response.status_code == 201, response.text
        return dict(response.json())

    return await eventually(granted, within=10)


async def visible_models(stack: Stack, token: str) -> list[str]:
    async with httpx.AsyncClient(base_url=stack.openai_base_url) as client:
        response = await client.get("/models", headers={"Authorization": f"Bearer {token}"})
    if response.status_code != 200:
        return []
    return [m["id"] for m in response.json()["data"]]


async def listed(stack: Stack, token: str, name: str) -> bool:
    return name in await visible_models(stack, token)


@dataclass
class ReadyModel:
    """A model enabled and granted to a member, who holds a token the proxy knows."""

    workspace: Workspace
    connection: dict[str, Any]
    model: dict[str, Any]
    member: dict[str, Any]
    token: str
    key: str


async def ready_model(
    stack: Stack, ws: Workspace, emulator: tuple[EmulatorState, str], upstream_id: str = "gpt-alpha"
) -> ReadyModel:
    key = provider_key()
    connection = await connect_provider(ws, emulator, key)
    models = await discovered_models(ws, connection["id"], count=len(emulator[0].models))
    model = next(m for m in models if m["upstream_id"] == upstream_id)
    await ws.ok("POST", f"/catalog/v1/models/{model['id']}/enable")
    member = await ws.member("member")
    await grant_when_known(
        ws, model["id"], {"principal_kind": "user", "principal_id": member["id"]}
    )
    token = await ws.token_for(member["id"])
    await eventually(lambda: listed(stack, token, model["name"]), within=10)
    return ReadyModel(ws, connection, model, member, token, key)


async def usage_events(stack: Stack, workspace_id: str, expected: int) -> list[dict[str, Any]]:
    """The workspace's usage events, once ``expected`` of them have been published."""
    nc = await nats.connect(stack.env["BYOM_NATS_URL"])
    subject = f"{stack.env['BYOM_SUBJECT_PREFIX']}.proxy.usage.recorded"
    found: list[dict[str, Any]] = []
    try:
        sub = await nc.jetstream().subscribe(
            subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )

        async def collected() -> bool:
            try:
                while True:
                    msg = await sub.next_msg(timeout=0.2)
                    envelope = orjson.loads(msg.data)
                    if envelope.get("workspaceid") == workspace_id:
                        found.append(envelope["data"])
            except (TimeoutError, nats.errors.TimeoutError):
                pass
            return len(found) >= expected

        await eventually(collected, within=10)
    finally:
        await nc.close()
    return found
