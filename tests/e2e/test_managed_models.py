"""Managed models through the running gateway: the install operator connects a provider,
offers some of its models to workspaces, and members call them with the official SDKs
next to their workspace's own models.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import anthropic
import httpx
import openai
import pytest

from tests.e2e.flows import (
    connect_provider,
    discovered_models,
    grant_when_known,
    listed,
    provider_key,
    usage_events,
)
from tests.e2e.providers import create_workspace
from tests.emulator import EmulatorState, running_emulator
from tests.stack import Stack
from tests.support import Workspace, eventually, gateway_client, unique

pytestmark = pytest.mark.e2e

MESSAGES: Final[list[Any]] = [{"role": "user", "content": "hi"}]


@dataclass
class Operator:
    """The install operator, talking to the gateway with the operator token."""

    client: httpx.AsyncClient
    token: str

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.call(method, path, **kwargs)
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    async def offer(self, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Offer a model; the catalog hears of new workspaces from access, so wait for it."""

        async def offered() -> dict[str, Any] | None:
            response = await self.call(
                "PUT", f"/catalog/v1/install/models/{model_id}/offer", json=body
            )
            if response.status_code == 422 and "unknown_workspace" in response.text:
                return None
            assert response.status_code == 200, response.text
            return dict(response.json())

        return await eventually(offered, within=10)


@dataclass
class Install:
    """An install connection to its own emulator, and its models as the operator lists them."""

    operator: Operator
    state: EmulatorState
    base_url: str
    key: str
    connection: dict[str, Any]
    models: dict[str, dict[str, Any]]  # upstream id -> install model


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client({n: stack.url(n) for n in stack.services}) as made:
        yield made


@pytest.fixture
async def install(stack: Stack, client: httpx.AsyncClient) -> AsyncIterator[Install]:
    state = EmulatorState(models=["gpt-shared", "gpt-other"])
    key = provider_key()
    state.keys.add(key)
    operator = Operator(client, stack.operator_token)
    async with running_emulator(state) as base_url:
        connection = await operator.ok(
            "POST",
            "/keyvault/v1/install/connections",
            json={
                "provider": "openai-compatible",
                "name": unique("shared"),
                "base_url": base_url,
                "api_key": key,
            },
        )
        assert key not in str(connection)

        async def install_models() -> list[dict[str, Any]] | None:
            page = await operator.ok(
                "GET", "/catalog/v1/install/models", params={"connection_id": connection["id"]}
            )
            return page["data"] if len(page["data"]) == 2 else None

        models = {m["upstream_id"]: m for m in await eventually(install_models, within=15)}
        yield Install(operator, state, base_url, key, connection, models)


async def _member_token(stack: Stack, ws: Workspace, model: dict[str, Any]) -> str:
    await ws.ok("POST", f"/catalog/v1/models/{model['id']}/enable")
    await grant_when_known(ws, model["id"], {"principal_kind": "workspace"})
    member = await ws.member("member")
    token = await ws.token_for(member["id"])
    await eventually(lambda: listed(stack, token, model["name"]), within=10)
    return token


async def _entry(ws: Workspace, name: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        page = await ws.ok("GET", "/catalog/v1/models", params={"q": name})
        return next((m for m in page["data"] if m["name"] == name), None)

    return await eventually(found, within=10)


async def test_an_offered_model_is_called_through_the_install_key_and_counted_as_managed(
    stack: Stack, client: httpx.AsyncClient, install: Install
) -> None:
    """Offered to one workspace only; next to the workspace's own model of the same upstream
    id, under another name; usage names the source and the install connection."""
    ours, theirs = await create_workspace(stack, client), await create_workspace(stack, client)
    shared = install.models["gpt-shared"]
    managed_name = f"managed/{install.connection['name']}/gpt-shared"
    assert shared["name"] == managed_name and shared["offer"] is None

    offered = await install.operator.offer(shared["id"], {"workspace_ids": [ours.id]})
    assert offered["offered_to"] == [ours.id]
    entry = await _entry(ours, managed_name)
    assert (entry["source"], entry["enabled"], entry["withdrawn"]) == ("managed", False, False)
    assert entry["id"] != shared["id"]

    own_key = provider_key()
    own = await connect_provider(ours, (install.state, install.base_url), own_key)
    own_models = await discovered_models(ours, own["id"], count=2)
    own_shared = next(m for m in own_models if m["upstream_id"] == "gpt-shared")
    assert own_shared["source"] == "byom" and own_shared["name"] != managed_name
    only_managed = await ours.ok("GET", "/catalog/v1/models", params={"source": "managed"})
    assert [m["name"] for m in only_managed["data"]] == [managed_name]

    token = await _member_token(stack, ours, entry)
    oa = openai.AsyncOpenAI(base_url=stack.openai_base_url, api_key=token, max_retries=0)
    an = anthropic.AsyncAnthropic(
        base_url=stack.openai_base_url.removesuffix("/v1"), api_key=token, max_retries=0
    )
    try:
        answer = await oa.chat.completions.create(model=managed_name, messages=MESSAGES)
        assert "gpt-shared" in (answer.choices[0].message.content or "")
        reply = await an.messages.create(model=managed_name, max_tokens=16, messages=MESSAGES)
        assert reply.content[0].type == "text"
    finally:
        await oa.close()
        await an.close()

    chats = install.state.requests_to("/chat/completions")
    assert [r.bearer for r in chats[-2:]] == [install.key, install.key]
    usage = await usage_events(stack, ours.id, expected=2)
    assert {(u["source"], u["connection_id"], u["model_name"]) for u in usage} == {
        ("managed", install.connection["id"], managed_name)
    }

    not_theirs = await theirs.ok("GET", "/catalog/v1/models")
    assert managed_name not in [m["name"] for m in not_theirs["data"]]
    member = await theirs.member("outsider")
    outsider = await theirs.token_for(member["id"])
    async with httpx.AsyncClient(base_url=stack.openai_base_url) as raw:
        refused = await raw.post(
            "/chat/completions",
            json={"model": managed_name, "messages": MESSAGES},
            headers={"Authorization": f"Bearer {outsider}"},
        )
    assert refused.status_code in (401, 404), refused.text


async def test_a_workspace_chooses_its_sources_and_a_withdrawn_model_stops(
    stack: Stack, client: httpx.AsyncClient, install: Install
) -> None:
    ws = await create_workspace(stack, client)
    shared = install.models["gpt-shared"]
    await install.operator.offer(shared["id"], {"workspace_ids": [ws.id]})
    managed = await _entry(ws, f"managed/{install.connection['name']}/gpt-shared")
    own_connection = await connect_provider(ws, (install.state, install.base_url), provider_key())
    own = next(
        m
        for m in await discovered_models(ws, own_connection["id"], count=2)
        if m["upstream_id"] == "gpt-other"
    )
    token = await _member_token(stack, ws, managed)
    await _member_token(stack, ws, own)
    oa = openai.AsyncOpenAI(base_url=stack.openai_base_url, api_key=token, max_retries=0)
    an = anthropic.AsyncAnthropic(
        base_url=stack.openai_base_url.removesuffix("/v1"), api_key=token, max_retries=0
    )

    async def refused_by_source(model: str) -> bool:
        try:
            await oa.chat.completions.create(model=model, messages=MESSAGES)
        except openai.PermissionDeniedError as error:
            return error.code == "model_source_not_allowed"
        return False

    try:
        await oa.chat.completions.create(model=own["name"], messages=MESSAGES)
        await oa.chat.completions.create(model=managed["name"], messages=MESSAGES)

        settings = await ws.ok(
            "PATCH", "/access/v1/workspace/settings", json={"model_sources": "byom_only"}
        )
        assert settings["model_sources"] == "byom_only"
        await eventually(lambda: refused_by_source(managed["name"]), within=5)
        with pytest.raises(anthropic.PermissionDeniedError):
            await an.messages.create(model=managed["name"], max_tokens=16, messages=MESSAGES)
        await oa.chat.completions.create(model=own["name"], messages=MESSAGES)
        assert managed["name"] not in [m.id async for m in oa.models.list()]

        await ws.ok(
            "PATCH", "/access/v1/workspace/settings", json={"model_sources": "managed_only"}
        )
        await eventually(lambda: refused_by_source(own["name"]), within=5)
        await oa.chat.completions.create(model=managed["name"], messages=MESSAGES)

        await ws.ok("PATCH", "/access/v1/workspace/settings", json={"model_sources": "both"})
        await install.operator.ok("DELETE", f"/catalog/v1/install/models/{shared['id']}/offer")

        async def withdrawn() -> bool:
            try:
                await oa.chat.completions.create(model=managed["name"], messages=MESSAGES)
            except openai.NotFoundError as error:
                return error.code == "model_not_found"
            return False

        await eventually(withdrawn, within=5)
        await oa.chat.completions.create(model=own["name"], messages=MESSAGES)
    finally:
        await oa.close()
        await an.close()

    listed_now = await ws.ok("GET", "/catalog/v1/models")
    assert managed["name"] not in [m["name"] for m in listed_now["data"]]
    entry = await ws.ok("GET", f"/catalog/v1/models/{managed['id']}")
    assert entry["withdrawn"] is True and entry["enabled"] is False
    refused = await ws.call("POST", f"/catalog/v1/models/{managed['id']}/enable")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "model_withdrawn"


async def test_an_offer_to_all_workspaces_reaches_those_created_later_and_follows_retirement(
    stack: Stack, client: httpx.AsyncClient, install: Install
) -> None:
    earlier = await create_workspace(stack, client)
    other = install.models["gpt-other"]
    await install.operator.offer(other["id"], {"all_workspaces": True})
    later = await create_workspace(stack, client)

    name = f"managed/{install.connection['name']}/gpt-other"
    for ws in (earlier, later):
        entry = await _entry(ws, name)
        assert entry["source"] == "managed"
    listing = await install.operator.ok(
        "GET", "/catalog/v1/install/models", params={"connection_id": install.connection["id"]}
    )
    offers = {m["upstream_id"]: m["offer"] for m in listing["data"]}
    assert offers["gpt-other"] == {"all_workspaces": True, "workspace_ids": []}

    install.state.models.remove("gpt-other")
    synced = await install.operator.ok(
        "POST", f"/catalog/v1/install/connections/{install.connection['id']}/sync"
    )
    assert synced["retired"] == 1
    for ws in (earlier, later):
        entry = await _entry(ws, name)
        assert entry["retired"] is True and entry["enabled"] is False
    refused = await install.operator.call(
        "PUT", f"/catalog/v1/install/models/{other['id']}/offer", json={"all_workspaces": True}
    )
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "model_retired"


async def test_install_routes_are_the_operators_alone(
    stack: Stack, client: httpx.AsyncClient, install: Install
) -> None:
    """A workspace admin's token is refused on every install route, and a workspace cannot
    name a connection "managed", which would shadow managed model names."""
    ws = await create_workspace(stack, client)
    model_id = install.models["gpt-shared"]["id"]
    connection_id = install.connection["id"]
    routes = [
        ("GET", "/keyvault/v1/install/connections"),
        ("GET", f"/keyvault/v1/install/connections/{connection_id}"),
        ("DELETE", f"/keyvault/v1/install/connections/{connection_id}"),
        ("GET", "/catalog/v1/install/models"),
        ("GET", "/catalog/v1/install/connections"),
        ("POST", f"/catalog/v1/install/connections/{connection_id}/sync"),
        ("DELETE", f"/catalog/v1/install/models/{model_id}/offer"),
    ]
    for method, path in routes:
        as_admin = await ws.call(method, path)
        assert as_admin.status_code == 403, (method, path, as_admin.text)
        anonymous = await client.request(method, path)
        assert anonymous.status_code == 401, (method, path, anonymous.text)
    as_admin = await ws.call(
        "PUT", f"/catalog/v1/install/models/{model_id}/offer", json={"all_workspaces": True}
    )
    assert as_admin.status_code == 403
    assert (await ws.call("GET", f"/keyvault/v1/connections/{connection_id}")).status_code == 404
    assert (await ws.call("GET", f"/catalog/v1/models/{model_id}")).status_code == 404

    install.state.keys.add("sk-emu-managed-name-try")
    reserved = await ws.call(
        "POST",
        "/keyvault/v1/connections",
        json={
            "provider": "openai-compatible",
            "name": "managed",
            "base_url": install.base_url,
            "api_key": "sk-emu-managed-name-try",
        },
    )
    assert reserved.status_code == 422 and "reserved" in reserved.text
