"""A workspace with one connection of every provider kind, each with one model granted.

Every kind is connected through keyvault's API to the emulator's route for that kind
(``tests.emulator.provider_base_url``), so each one is checked, listed by catalog,
enabled and granted to the whole workspace exactly as an admin would do it. The member's
token then reaches all of them through the proxy.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

import httpx

from tests.e2e.flows import discovered_models, grant_when_known, provider_key, visible_models
from tests.emulator import EmulatorState, provider_base_url
from tests.stack import Stack
from tests.support import Workspace, eventually, new_workspace, unique

KINDS: Final = (
    "openai-compatible",
    "openai",
    "xai",
    "openrouter",
    "groq",
    "deepseek",
    "anthropic",
    "google",
    "bedrock",
)
# The model every emulated provider lists; each connection sees it under its own name.
UPSTREAM_MODEL: Final = "omni-one"


@dataclass
class Providers:
    """What a test needs to call each provider kind through the gateway."""

    workspace: Workspace
    token: str
    member_id: str
    models: dict[str, str]  # kind -> model name at the gateway
    connections: dict[str, dict[str, Any]]  # kind -> connection as keyvault answered
    keys: dict[str, str]  # kind -> provider key

    def name(self, kind: str) -> str:
        """The connection's name, which the gateway's errors use for the provider."""
        return str(self.connections[kind]["name"])


async def create_workspace(stack: Stack, client: httpx.AsyncClient) -> Workspace:
    return await new_workspace(client, stack.operator_token, "doors")


async def connect_kind(
    ws: Workspace,
    state: EmulatorState,
    base_url: str,
    kind: str,
    *,
    grant: bool = True,
    upstream_id: str = UPSTREAM_MODEL,
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Connect ``kind`` to the emulator, then enable a model and grant it to everyone."""
    key = provider_key()
    state.keys.add(key)
    connection = await ws.ok(
        "POST",
        "/keyvault/v1/connections",
        json={
            "provider": kind,
            "name": unique(kind),
            "base_url": provider_base_url(base_url, kind),
            "api_key": key,
        },
    )
    listed = await discovered_models(ws, connection["id"], count=1)
    model = next(m for m in listed if m["upstream_id"] == upstream_id)
    await ws.ok("POST", f"/catalog/v1/models/{model['id']}/enable")
    if grant:
        await grant_when_known(ws, model["id"], {"principal_kind": "workspace"})
    return connection, model, key


async def connect_every_provider(
    stack: Stack,
    client: httpx.AsyncClient,
    state: EmulatorState,
    base_url: str,
    kinds: tuple[str, ...] = KINDS,
) -> Providers:
    ws = await create_workspace(stack, client)
    member = await ws.member("member")
    token = await ws.token_for(member["id"])
    connected = await asyncio.gather(*(connect_kind(ws, state, base_url, k) for k in kinds))
    providers = Providers(
        workspace=ws,
        token=token,
        member_id=member["id"],
        models={kind: model["name"] for kind, (_, model, _) in zip(kinds, connected, strict=True)},
        connections={kind: conn for kind, (conn, _, _) in zip(kinds, connected, strict=True)},
        keys={kind: key for kind, (_, _, key) in zip(kinds, connected, strict=True)},
    )

    async def all_visible() -> bool:
        return set(providers.models.values()) <= set(await visible_models(stack, token))

    await eventually(all_visible, within=15)
    return providers
