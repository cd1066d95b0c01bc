"""The catalog service, running for real beside access and keyvault, against a provider emulator.

An admin connects a provider through keyvault; the catalog hears of it through the event
stream, fetches the key from keyvault, lists the models (several pages) and records them
disabled. Admins switch models on and off, resync, and see how each sync went. Events are
read back from the catalog's own events table, where they are committed with the rows.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
import psycopg
import pytest

from tests.conftest import Infra
from tests.emulator import EmulatorState, running_emulator
from tests.stack import Stack, running_stack
from tests.support import Workspace, eventually, gateway_client, new_workspace, unique

pytestmark = pytest.mark.integration

MODELS = ["gpt-alpha", "gpt-beta", "gpt-gamma", "gpt-delta", "gpt-epsilon"]
# Five models on pages of two: the catalog must follow three pages.
PAGE_SIZE = 2


@pytest.fixture(scope="module")
def stack(infra: Infra, nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        database_url=infra.database_url,
        nats_url=nats_url,
        stream=infra.stream,
        subject_prefix=infra.prefix,
        log_dir=Path(tmp_path_factory.mktemp("catalog-logs")),
        services=("access", "keyvault", "catalog"),
    ) as running:
        yield running


@pytest.fixture
def database_url(infra: Infra) -> str:
    """This module's database, where each service keeps its schema and events."""
    return infra.database_url


@pytest.fixture
async def gateway(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client({name: stack.url(name) for name in stack.services}) as client:
        yield client


@dataclass
class Provider:
    """A provider emulator of the test's own, with one accepted key."""

    state: EmulatorState
    base_url: str
    key: str


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    key = f"sk-test-{secrets.token_urlsafe(24)}"
    state = EmulatorState(keys={key}, models=list(MODELS), page_size=PAGE_SIZE)
    async with running_emulator(state) as base_url:
        yield Provider(state, base_url, key)


@pytest.fixture
async def workspace(stack: Stack, gateway: httpx.AsyncClient) -> Workspace:
    return await new_workspace(gateway, stack.operator_token)


async def connect(workspace: Workspace, provider: Provider, name: str | None = None) -> str:
    """Connect the emulator through keyvault; the connection's id."""
    connection = await workspace.ok(
        "POST",
        "/keyvault/v1/connections",
        json={
            "provider": "openai-compatible",
            "name": name or unique("emu"),
            "base_url": provider.base_url,
            "api_key": provider.key,
        },
    )
    return str(connection["id"])


async def models_of(workspace: Workspace, connection_id: str) -> list[dict[str, Any]]:
    answer = await workspace.ok(
        "GET", "/catalog/v1/models", params={"connection_id": connection_id}
    )
    return list(answer["data"])


async def connected_with_models(
    workspace: Workspace, provider: Provider, count: int = len(MODELS)
) -> tuple[str, list[dict[str, Any]]]:
    """Connect and wait until the catalog lists ``count`` models of the connection."""
    connection_id = await connect(workspace, provider)

    async def listed() -> list[dict[str, Any]] | None:
        found = await models_of(workspace, connection_id)
        return found if len(found) == count else None

    return connection_id, await eventually(listed, within=15)


async def connection_status(workspace: Workspace, connection_id: str) -> dict[str, Any]:
    answer = await workspace.ok("GET", "/catalog/v1/connections")
    (connection,) = [c for c in answer["data"] if c["id"] == connection_id]
    return dict(connection)


async def model_events(database_url: str, connection_id: str) -> list[tuple[str, str]]:
    """(event type, model id) of every model event the catalog committed for the connection."""
    query = (
        "SELECT type, envelope->'data'->>'model_id' FROM catalog.events "
        "WHERE envelope->'data'->>'connection_id' = %s ORDER BY position"
    )
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        rows = await (await conn.execute(query, (connection_id,))).fetchall()
    return [(str(kind), str(model_id)) for kind, model_id in rows]


async def ensure_running(stack: Stack, name: str) -> None:
    process = stack.services[name].process
    if process is None or process.poll() is not None:
        # Starting waits for health with blocking calls; the emulators share this loop.
        await asyncio.to_thread(stack.start, name)


def by_upstream(models: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["upstream_id"]: m for m in models}


async def test_connected_provider_models_appear_disabled(
    stack: Stack, workspace: Workspace, provider: Provider, database_url: str
) -> None:
    """Connecting a provider makes every upstream model appear, across pages, disabled, once."""
    name = unique("team")
    connection_id = await connect(workspace, provider, name)

    async def listed() -> list[dict[str, Any]] | None:
        found = await models_of(workspace, connection_id)
        return found if len(found) == len(MODELS) else None

    models = await eventually(listed, within=15)

    assert sorted(m["upstream_id"] for m in models) == sorted(MODELS)
    for model in models:
        assert model["name"] == f"{name}/{model['upstream_id']}"
        assert model["connection_id"] == connection_id
        assert model["provider"] == "openai-compatible"
        assert model["owned_by"] == "emulator"
        assert model["enabled"] is False
        assert model["retired"] is False
    paged = [r for r in provider.state.requests_to("/models") if "after" in r.query]
    assert len(paged) >= 2
    events = await model_events(database_url, connection_id)
    assert sorted(events) == sorted(("byom.model.discovered.v1", m["id"]) for m in models)
    status = await connection_status(workspace, connection_id)
    assert status["last_sync_ok"] is True
    assert status["last_sync_reason"] is None
    assert status["status"] == "active"
    assert provider.key not in stack.logs()


async def test_enable_and_disable_emit_events_only_on_change(
    workspace: Workspace, provider: Provider, database_url: str
) -> None:
    """Enable and disable answer the model and append an event only when its state changes."""
    connection_id, models = await connected_with_models(workspace, provider)
    model_id = models[0]["id"]
    switched = ("byom.model.enabled.v1", "byom.model.disabled.v1")

    async def switches() -> list[str]:
        events = await model_events(database_url, connection_id)
        return [kind for kind, mid in events if mid == model_id and kind in switched]

    enabled = await workspace.ok("POST", f"/catalog/v1/models/{model_id}/enable")
    again = await workspace.ok("POST", f"/catalog/v1/models/{model_id}/enable")
    assert enabled["enabled"] is True
    assert again["enabled"] is True
    assert await switches() == ["byom.model.enabled.v1"]

    disabled = await workspace.ok("POST", f"/catalog/v1/models/{model_id}/disable")
    await workspace.ok("POST", f"/catalog/v1/models/{model_id}/disable")
    assert disabled["enabled"] is False
    assert await switches() == ["byom.model.enabled.v1", "byom.model.disabled.v1"]
    fetched = await workspace.ok("GET", f"/catalog/v1/models/{model_id}")
    assert fetched == disabled


async def test_resync_without_upstream_change_emits_nothing(
    workspace: Workspace, provider: Provider, database_url: str
) -> None:
    """An on-demand sync that finds the same models reports no change and appends no event."""
    connection_id, models = await connected_with_models(workspace, provider)
    before = await model_events(database_url, connection_id)

    result = await workspace.ok("POST", f"/catalog/v1/connections/{connection_id}/sync")

    assert result["ok"] is True
    assert (result["discovered"], result["updated"], result["retired"]) == (0, 0, 0)
    assert await model_events(database_url, connection_id) == before
    assert await models_of(workspace, connection_id) == models


async def test_model_removed_upstream_is_retired_on_resync(
    workspace: Workspace, provider: Provider, database_url: str
) -> None:
    """A model the provider stops listing is retired (and off); enabling it is refused with 409."""
    connection_id, models = await connected_with_models(workspace, provider)
    gone = by_upstream(models)["gpt-gamma"]
    await workspace.ok("POST", f"/catalog/v1/models/{gone['id']}/enable")
    provider.state.models = [m for m in MODELS if m != "gpt-gamma"]

    result = await workspace.ok("POST", f"/catalog/v1/connections/{connection_id}/sync")

    assert (result["ok"], result["discovered"], result["retired"]) == (True, 0, 1)
    retired = await workspace.ok("GET", f"/catalog/v1/models/{gone['id']}")
    assert retired["retired"] is True
    assert retired["enabled"] is False
    assert (await model_events(database_url, connection_id))[-1] == (
        "byom.model.retired.v1",
        gone["id"],
    )
    refused = await workspace.call("POST", f"/catalog/v1/models/{gone['id']}/enable")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "model_retired"
    others = [m for m in await models_of(workspace, connection_id) if m["id"] != gone["id"]]
    assert all(not m["retired"] for m in others)


async def test_model_offered_again_comes_back_under_its_id_disabled(
    workspace: Workspace, provider: Provider, database_url: str
) -> None:
    """A retired model the provider lists again is rediscovered under the same id, disabled."""
    connection_id, models = await connected_with_models(workspace, provider)
    model = by_upstream(models)["gpt-beta"]
    provider.state.models = [m for m in MODELS if m != "gpt-beta"]
    await workspace.ok("POST", f"/catalog/v1/connections/{connection_id}/sync")
    provider.state.models = list(MODELS)

    result = await workspace.ok("POST", f"/catalog/v1/connections/{connection_id}/sync")

    assert (result["discovered"], result["retired"]) == (1, 0)
    back = await workspace.ok("GET", f"/catalog/v1/models/{model['id']}")
    assert (back["retired"], back["enabled"]) == (False, False)
    events = [e for e in await model_events(database_url, connection_id) if e[1] == model["id"]]
    assert [kind for kind, _ in events] == [
        "byom.model.discovered.v1",
        "byom.model.retired.v1",
        "byom.model.discovered.v1",
    ]


async def test_changed_owner_upstream_is_an_update(
    workspace: Workspace, provider: Provider, database_url: str
) -> None:
    """A model whose owner changes upstream is updated in place, with a ModelUpdated event each."""
    connection_id, models = await connected_with_models(workspace, provider)
    provider.state.owned_by = "someone-else"

    result = await workspace.ok("POST", f"/catalog/v1/connections/{connection_id}/sync")

    assert (result["discovered"], result["updated"], result["retired"]) == (0, len(MODELS), 0)
    after = await models_of(workspace, connection_id)
    assert {m["owned_by"] for m in after} == {"someone-else"}
    assert {m["id"] for m in after} == {m["id"] for m in models}
    updated = [
        mid
        for kind, mid in await model_events(database_url, connection_id)
        if kind == "byom.model.updated.v1"
    ]
    assert sorted(updated) == sorted(m["id"] for m in models)


@pytest.mark.parametrize(
    ("status", "raw_body", "reason_part"),
    [
        (503, None, "503"),
        (200, "this is not a model list", "not JSON"),
    ],
    ids=["provider-down", "garbage-answer"],
)
async def test_failing_provider_leaves_models_untouched_and_shows_the_reason(
    workspace: Workspace,
    provider: Provider,
    database_url: str,
    status: int,
    raw_body: str | None,
    reason_part: str,
) -> None:
    """A failed sync changes no model, appends no event, and is visible on the connection."""
    connection_id, models = await connected_with_models(workspace, provider)
    before = await model_events(database_url, connection_id)
    provider.state.models = ["gpt-alpha"]
    provider.state.fail_next(status, times=1, raw_body=raw_body.encode() if raw_body else None)

    result = await workspace.ok("POST", f"/catalog/v1/connections/{connection_id}/sync")

    assert result["ok"] is False
    assert reason_part in result["reason"]
    assert await models_of(workspace, connection_id) == models
    assert await model_events(database_url, connection_id) == before
    shown = await connection_status(workspace, connection_id)
    assert shown["last_sync_ok"] is False
    assert shown["last_sync_reason"] == result["reason"]

    recovered = await workspace.ok("POST", f"/catalog/v1/connections/{connection_id}/sync")
    assert (recovered["ok"], recovered["reason"], recovered["retired"]) == (True, None, 4)


async def test_a_provider_failing_when_announced_does_not_block_the_consumer(
    stack: Stack, workspace: Workspace, provider: Provider, database_url: str
) -> None:
    """A listing that fails for an announced connection is recorded and the next events still apply."""
    other_key = f"sk-test-{secrets.token_urlsafe(24)}"
    other_state = EmulatorState(keys={other_key}, models=["other-a", "other-b", "other-c"])
    # With the catalog down, both connections wait in the stream; the first provider
    # then fails every listing when the catalog comes back.
    await asyncio.to_thread(stack.stop, "catalog")
    try:
        failing_id = await connect(workspace, provider)
        provider.state.fail_next(500, times=1000)
        async with running_emulator(other_state) as other_url:
            healthy_id = await connect(workspace, Provider(other_state, other_url, other_key))
            await asyncio.to_thread(stack.start, "catalog")

            async def healthy_listed() -> list[dict[str, Any]] | None:
                found = await models_of(workspace, healthy_id)
                return found if len(found) == 3 else None

            await eventually(healthy_listed, within=20)
    finally:
        await ensure_running(stack, "catalog")

    failing = await connection_status(workspace, failing_id)
    assert failing["last_sync_ok"] is False
    assert "500" in failing["last_sync_reason"]
    assert await models_of(workspace, failing_id) == []
    assert await model_events(database_url, failing_id) == []

    provider.state.faults.clear()
    result = await workspace.ok("POST", f"/catalog/v1/connections/{failing_id}/sync")
    assert (result["ok"], result["discovered"]) == (True, len(MODELS))


async def test_a_provider_event_delivered_twice_applies_once(
    workspace: Workspace,
    provider: Provider,
    database_url: str,
    nats_url: str,
    infra: Infra,
) -> None:
    """A second delivery of a ProviderConnected event discovers nothing more."""
    connection_id, models = await connected_with_models(workspace, provider)
    before = await model_events(database_url, connection_id)
    query = (
        "SELECT subject, envelope FROM keyvault.events "
        "WHERE type = 'byom.provider.connected.v1' AND envelope->'data'->>'connection_id' = %s"
    )
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        (subject, envelope), *_ = await (await conn.execute(query, (connection_id,))).fetchall()

    # Without a Nats-Msg-Id, JetStream stores it again: the consumer sees a true duplicate.
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().publish(subject, orjson.dumps(envelope), stream=infra.stream)
    finally:
        await nc.close()
    # The consumer applies events one at a time in stream order: once a later connection
    # has its models, the duplicate before it has been handled.
    later_key = f"sk-test-{secrets.token_urlsafe(24)}"
    later_state = EmulatorState(keys={later_key}, models=["later-a"])
    async with running_emulator(later_state) as later_url:
        await connected_with_models(workspace, Provider(later_state, later_url, later_key), 1)

    assert await model_events(database_url, connection_id) == before
    assert await models_of(workspace, connection_id) == models


async def test_key_rotation_resyncs_and_disconnection_is_recorded(
    workspace: Workspace, provider: Provider
) -> None:
    """A rotated key triggers a fresh listing; a disconnected connection is marked and not synced."""
    connection_id, _ = await connected_with_models(workspace, provider)
    new_key = f"sk-test-{secrets.token_urlsafe(24)}"
    provider.state.keys.add(new_key)
    provider.state.models = [*MODELS, "gpt-zeta"]

    await workspace.ok(
        "PUT", f"/keyvault/v1/connections/{connection_id}/key", json={"api_key": new_key}
    )

    async def zeta_listed() -> dict[str, Any] | None:
        return by_upstream(await models_of(workspace, connection_id)).get("gpt-zeta")

    zeta = await eventually(zeta_listed, within=15)
    assert zeta["enabled"] is False

    deleted = await workspace.call("DELETE", f"/keyvault/v1/connections/{connection_id}")
    assert deleted.status_code == 204

    async def disconnected() -> bool:
        return (await connection_status(workspace, connection_id))["status"] == "disconnected"

    await eventually(disconnected, within=15)
    refused = await workspace.call("POST", f"/catalog/v1/connections/{connection_id}/sync")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "connection_disconnected"


async def test_another_workspaces_models_and_connections_are_not_found(
    stack: Stack, gateway: httpx.AsyncClient, workspace: Workspace, provider: Provider
) -> None:
    """Ids from another workspace answer 404 on every route and never show up in its lists."""
    connection_id, models = await connected_with_models(workspace, provider)
    model_id = models[0]["id"]
    stranger = await new_workspace(gateway, stack.operator_token)

    for method, path in [
        ("GET", f"/catalog/v1/models/{model_id}"),
        ("POST", f"/catalog/v1/models/{model_id}/enable"),
        ("POST", f"/catalog/v1/models/{model_id}/disable"),
        ("GET", f"/catalog/v1/connections/{connection_id}"),
        ("POST", f"/catalog/v1/connections/{connection_id}/sync"),
    ]:
        response = await stranger.call(method, path)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"

    assert (await stranger.ok("GET", "/catalog/v1/models"))["data"] == []
    assert (await stranger.ok("GET", "/catalog/v1/connections"))["data"] == []
    assert (await workspace.ok("GET", f"/catalog/v1/models/{model_id}"))["enabled"] is False


async def test_admin_routes_need_an_admin_token(
    gateway: httpx.AsyncClient, workspace: Workspace
) -> None:
    """No token is 401, a member's token is 403, the owner's token is let in."""
    member = await workspace.member("mia")
    member_token = await workspace.token_for(member["id"])

    anonymous = await gateway.get("/catalog/v1/models")
    as_member = await gateway.get(
        "/catalog/v1/models", headers={"Authorization": f"Bearer {member_token}"}
    )
    as_owner = await workspace.call("GET", "/catalog/v1/models")

    assert anonymous.status_code == 401
    assert as_member.status_code == 403
    assert as_owner.status_code == 200
