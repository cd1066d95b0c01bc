"""The catalog keeping itself current: scheduled syncs with backoff, new-model policies and
the grants access makes for them, bulk switches, prices and successors from the data file.

The services run for real beside a provider emulator, with an operator's data file that
prices some of the emulator's models and names a successor for one. Schedules are made
due by moving a connection's ``next_sync_at`` into the past, as time would.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from services.catalog.domain import ModelDetails
from services.catalog.handlers import claim_due
from services.catalog.tables import connections, metadata
from services.catalog.views import CostThresholds
from shared.config import normalise_database_url
from shared.db import create_engine, create_schema
from tests.catalog_population import populate, traits
from tests.conftest import Infra
from tests.emulator import EmulatorState, running_emulator
from tests.stack import Stack, running_stack
from tests.support import Workspace, eventually, gateway_client, new_workspace, unique

pytestmark = pytest.mark.integration

MODELS = ["gpt-alpha", "gpt-beta", "gpt-gamma"]
RETRY_BASE_SECONDS = 600
DATA = {
    "notice": "test data: prices made up for the emulator's models",
    "models": [
        {
            "provider": "openai-compatible",
            "match": "gpt-alpha",
            "display_name": "GPT Alpha",
            "context_window": 64000,
            "input_modalities": ["text", "image"],
            "output_modalities": ["text"],
            "tools": True,
            "price": {"input": 20.0, "output": 80.0, "cached_input": 2.0},
        },
        {
            "provider": "openai-compatible",
            "match": "gpt-beta*",
            "display_name": "GPT Beta",
            "tools": False,
            "price": {"input": 0.5, "output": 1.5},
        },
        {"provider": "openai-compatible", "match": "gpt-gamma", "successor": "gpt-delta"},
    ],
}


@pytest.fixture(scope="module")
def stack(infra: Infra, nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_file = tmp_path_factory.mktemp("model-data") / "models.json"
    data_file.write_text(json.dumps(DATA))
    with running_stack(
        database_url=infra.database_url,
        nats_url=nats_url,
        stream=infra.stream,
        subject_prefix=infra.prefix,
        log_dir=Path(tmp_path_factory.mktemp("catalog-lifecycle-logs")),
        services=("access", "keyvault", "catalog"),
        extra_env={
            "catalog": {
                "BYOM_MODEL_DATA_FILE": str(data_file),
                "BYOM_SYNC_POLL_SECONDS": "0.3",
                "BYOM_SYNC_RETRY_BASE_SECONDS": str(RETRY_BASE_SECONDS),
                "BYOM_SYNC_RETRY_MAX_SECONDS": "86400",
            }
        },
    ) as running:
        yield running


@pytest.fixture
async def gateway(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client({name: stack.url(name) for name in stack.services}) as client:
        yield client


@dataclass
class Provider:
    state: EmulatorState
    base_url: str
    key: str


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    key = f"sk-test-{secrets.token_urlsafe(24)}"
    state = EmulatorState(keys={key}, models=list(MODELS), page_size=10)
    async with running_emulator(state) as base_url:
        yield Provider(state, base_url, key)


@pytest.fixture
async def workspace(stack: Stack, gateway: httpx.AsyncClient) -> Workspace:
    return await new_workspace(gateway, stack.operator_token, "acme")


async def connected(workspace: Workspace, provider: Provider) -> tuple[str, dict[str, Any]]:
    """Connect the emulator and wait for its models; the connection id and models by upstream id."""
    name = unique("emu")
    connection = await workspace.ok(
        "POST",
        "/keyvault/v1/connections",
        json={
            "provider": "openai-compatible",
            "name": name,
            "base_url": provider.base_url,
            "api_key": provider.key,
        },
    )
    connection_id = str(connection["id"])

    async def listed() -> dict[str, Any] | None:
        found = await models_of(workspace, connection_id)
        return found if len(found) == len(MODELS) else None

    return connection_id, await eventually(listed, within=15)


async def models_of(workspace: Workspace, connection_id: str) -> dict[str, Any]:
    answer = await workspace.ok(
        "GET", "/catalog/v1/models", params={"connection_id": connection_id}
    )
    return {m["upstream_id"]: m for m in answer["data"]}


async def connection(workspace: Workspace, connection_id: str) -> dict[str, Any]:
    return dict(await workspace.ok("GET", f"/catalog/v1/connections/{connection_id}"))


async def make_due(database_url: str, connection_id: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute(
            "UPDATE catalog.connections SET next_sync_at = now() - interval '1 second' "
            "WHERE id = %s",
            (connection_id,),
        )


async def events(database_url: str, schema: str, model_id: str) -> list[tuple[str, Any]]:
    """(type, envelope) of every event about the model in a service's events table."""
    query = (
        f"SELECT type, envelope FROM {schema}.events "  # noqa: S608 - a fixed schema name
        "WHERE envelope->'data'->>'model_id' = %s ORDER BY position"
    )
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        rows = await (await conn.execute(query, (model_id,))).fetchall()
    return [(str(kind), envelope) for kind, envelope in rows]


def parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


async def test_models_carry_the_data_files_description_price_and_flags(
    workspace: Workspace, provider: Provider
) -> None:
    """Priced models show their prices and high-cost flag; the others say price unknown."""
    _, models = await connected(workspace, provider)

    alpha, beta, gamma = models["gpt-alpha"], models["gpt-beta"], models["gpt-gamma"]
    assert alpha["display_name"] == "GPT Alpha"
    assert alpha["context_window"] == 64000
    assert alpha["capabilities"] == ["tools", "vision"]
    assert alpha["price"] == {
        "currency": "USD",
        "unit": "per_million_tokens",
        "input": 20.0,
        "output": 80.0,
        "cached_input": 2.0,
    }
    assert (alpha["price_unknown"], alpha["high_cost"]) == (False, True)
    assert (beta["price_unknown"], beta["high_cost"], beta["supports_tools"]) == (
        False,
        False,
        False,
    )
    assert (gamma["price"], gamma["price_unknown"], gamma["high_cost"]) == (None, True, False)


async def test_a_retired_model_names_its_successor_and_keeps_its_history(
    workspace: Workspace, provider: Provider, infra: Infra
) -> None:
    """A model gone upstream is retired with the successor the data file names, on the event too."""
    connection_id, models = await connected(workspace, provider)
    gamma = models["gpt-gamma"]
    provider.state.models = ["gpt-alpha", "gpt-beta", "gpt-delta"]

    result = await workspace.ok("POST", f"/catalog/v1/connections/{connection_id}/sync")

    assert (result["discovered"], result["retired"]) == (1, 1)
    retired = await workspace.ok("GET", f"/catalog/v1/models/{gamma['id']}")
    name = gamma["name"].rsplit("/", 1)[0]
    assert retired["retired"] is True
    assert retired["retired_at"] is not None
    assert retired["successor"] == f"{name}/gpt-delta"
    kinds = [kind for kind, _ in await events(infra.database_url, "catalog", gamma["id"])]
    assert kinds == ["byom.model.discovered.v1", "byom.model.retired.v1"]
    (_, envelope) = (await events(infra.database_url, "catalog", gamma["id"]))[-1]
    assert envelope["data"]["successor"] == f"{name}/gpt-delta"


async def test_a_policy_enables_new_models_and_access_grants_them_once(
    workspace: Workspace, provider: Provider, infra: Infra
) -> None:
    """With enable_for_workspace, a newly discovered model is on and granted by the system, once."""
    connection_id, models = await connected(workspace, provider)
    assert all(not m["enabled"] for m in models.values())
    policy = {"action": "enable_for_workspace", "group_ids": []}

    answer = await workspace.ok(
        "PUT", f"/catalog/v1/connections/{connection_id}/new-model-policy", json=policy
    )
    provider.state.models = [*MODELS, "gpt-new"]
    await workspace.ok("POST", f"/catalog/v1/connections/{connection_id}/sync")
    await workspace.ok("POST", f"/catalog/v1/connections/{connection_id}/sync")

    assert answer == policy
    assert (await connection(workspace, connection_id))["new_model_policy"] == policy
    after = await models_of(workspace, connection_id)
    new = after["gpt-new"]
    assert new["enabled"] is True
    assert all(not after[m]["enabled"] for m in MODELS)

    async def rules() -> list[dict[str, Any]] | None:
        found = await workspace.ok("GET", f"/access/v1/models/{new['id']}/rules")
        return list(found["data"]) or None

    (rule,) = await eventually(rules, within=15)
    assert (rule["principal_kind"], rule["principal_id"]) == ("workspace", workspace.id)
    granted = [e for kind, e in await events(infra.database_url, "access", new["id"])]
    assert [e["type"] for e in granted] == ["byom.access.granted.v1"]
    assert granted[0]["actorid"] == "system"
    catalog_events = [kind for kind, _ in await events(infra.database_url, "catalog", new["id"])]
    assert catalog_events == ["byom.model.discovered.v1", "byom.model.enabled.v1"]


async def test_a_group_policy_grants_the_groups_that_exist(
    workspace: Workspace, provider: Provider
) -> None:
    """enable_for_groups grants each named group of the workspace and skips unknown ones."""
    connection_id, _ = await connected(workspace, provider)
    group = await workspace.ok("POST", "/access/v1/groups", json={"name": unique("eng")})
    missing = "00000000-0000-0000-0000-000000000000"
    policy = {"action": "enable_for_groups", "group_ids": [group["id"], missing]}
    await workspace.ok(
        "PUT", f"/catalog/v1/connections/{connection_id}/new-model-policy", json=policy
    )
    provider.state.models = [*MODELS, "gpt-team"]

    await workspace.ok("POST", f"/catalog/v1/connections/{connection_id}/sync")

    new = (await models_of(workspace, connection_id))["gpt-team"]

    async def rules() -> list[dict[str, Any]] | None:
        found = await workspace.ok("GET", f"/access/v1/models/{new['id']}/rules")
        return list(found["data"]) or None

    (rule,) = await eventually(rules, within=15)
    assert (rule["principal_kind"], rule["principal_id"]) == ("group", group["id"])


async def test_a_policy_naming_groups_wrongly_is_refused(
    workspace: Workspace, provider: Provider
) -> None:
    """Groups without enable_for_groups, or that action without groups, are a 422."""
    connection_id, _ = await connected(workspace, provider)
    path = f"/catalog/v1/connections/{connection_id}/new-model-policy"

    no_groups = await workspace.call("PUT", path, json={"action": "enable_for_groups"})
    stray = await workspace.call("PUT", path, json={"action": "disabled", "group_ids": ["g"]})

    assert (no_groups.status_code, stray.status_code) == (422, 422)
    assert no_groups.json()["error"]["code"] == "invalid_policy"
    shown = await connection(workspace, connection_id)
    assert shown["new_model_policy"] == {"action": "disabled", "group_ids": []}


async def test_bulk_switches_report_each_model_and_emit_only_changes(
    workspace: Workspace, provider: Provider, infra: Infra
) -> None:
    """Bulk enable switches what it can, reports unknown and retired ids, and says nothing twice."""
    connection_id, models = await connected(workspace, provider)
    alpha, beta, gamma = (models[m]["id"] for m in MODELS)
    provider.state.models = ["gpt-alpha", "gpt-beta"]
    await workspace.ok("POST", f"/catalog/v1/connections/{connection_id}/sync")
    unknown = "no-such-model"

    first = await workspace.ok(
        "POST", "/catalog/v1/models/enable", json={"model_ids": [alpha, beta, gamma, unknown]}
    )
    again = await workspace.ok("POST", "/catalog/v1/models/enable", json={"model_ids": [alpha]})
    off = await workspace.ok("POST", "/catalog/v1/models/disable", json={"model_ids": [beta]})

    assert sorted(first["changed"]) == sorted([alpha, beta])
    assert {m["id"]: m["enabled"] for m in first["data"]} == {alpha: True, beta: True}
    assert {(e["model_id"], e["code"]) for e in first["errors"]} == {
        (gamma, "model_retired"),
        (unknown, "not_found"),
    }
    assert (again["changed"], again["errors"]) == ([], [])
    assert off["changed"] == [beta]
    kinds = [kind for kind, _ in await events(infra.database_url, "catalog", alpha)]
    assert kinds == ["byom.model.discovered.v1", "byom.model.enabled.v1"]
    too_many = await workspace.call(
        "POST", "/catalog/v1/models/enable", json={"model_ids": ["x"] * 501}
    )
    assert too_many.status_code == 422


async def test_a_due_connection_is_synced_by_the_schedule(
    workspace: Workspace, provider: Provider, infra: Infra
) -> None:
    """Once due, the scheduler syncs the connection as the system and schedules the next one."""
    connection_id, _ = await connected(workspace, provider)
    before = await connection(workspace, connection_id)
    assert parse(before["next_sync_at"]) > datetime.now(UTC) + timedelta(minutes=50)
    provider.state.models = [*MODELS, "gpt-scheduled"]

    await make_due(infra.database_url, connection_id)

    async def scheduled() -> dict[str, Any] | None:
        return (await models_of(workspace, connection_id)).get("gpt-scheduled")

    model = await eventually(scheduled, within=15)
    after = await connection(workspace, connection_id)
    assert parse(after["last_sync_at"]) > parse(before["last_sync_at"])
    assert after["last_sync_success_at"] == after["last_sync_at"]
    assert (after["last_sync_ok"], after["sync_failures"]) == (True, 0)
    next_at = parse(after["next_sync_at"]) - datetime.now(UTC)
    assert timedelta(minutes=50) < next_at < timedelta(minutes=70)
    ((_, discovered),) = await events(infra.database_url, "catalog", model["id"])
    assert discovered["actorid"] == "system"


async def test_failed_scheduled_syncs_back_off_and_change_nothing(
    workspace: Workspace, provider: Provider, infra: Infra
) -> None:
    """Each failure in a row doubles the wait; the reason and count show; models stay."""
    connection_id, models = await connected(workspace, provider)
    provider.state.models = ["gpt-alpha"]
    provider.state.fail_next(503, times=1000)

    waits = []
    for failures in (1, 2):
        await make_due(infra.database_url, connection_id)

        async def failed(count: int = failures) -> dict[str, Any] | None:
            shown = await connection(workspace, connection_id)
            return shown if shown["sync_failures"] == count else None

        shown = await eventually(failed, within=15)
        waits.append((parse(shown["next_sync_at"]) - parse(shown["last_sync_at"])).total_seconds())

    assert shown["last_sync_ok"] is False
    assert "503" in shown["last_sync_reason"]
    assert shown["last_sync_success_at"] is not None
    assert RETRY_BASE_SECONDS * 0.85 < waits[0] < RETRY_BASE_SECONDS * 1.15
    assert RETRY_BASE_SECONDS * 2 * 0.85 < waits[1] < RETRY_BASE_SECONDS * 2 * 1.15
    assert await models_of(workspace, connection_id) == models

    provider.state.faults.clear()
    recovered = await workspace.ok("POST", f"/catalog/v1/connections/{connection_id}/sync")
    assert (recovered["ok"], recovered["retired"]) == (True, 2)
    assert (await connection(workspace, connection_id))["sync_failures"] == 0


async def test_a_workspace_decides_whether_unpriced_models_may_be_used(
    workspace: Workspace, infra: Infra
) -> None:
    """The setting defaults to allowed; a change is recorded once as an event, by its admin."""
    path = "/access/v1/workspace/settings"

    default = await workspace.ok("GET", path)
    changed = await workspace.ok("PATCH", path, json={"allow_unpriced_models": False})
    same = await workspace.ok("PATCH", path, json={"allow_unpriced_models": False})
    untouched = await workspace.ok("PATCH", path, json={})

    assert default == {"allow_unpriced_models": True, "model_sources": "both"}
    assert changed == same == untouched == {"allow_unpriced_models": False, "model_sources": "both"}
    query = (
        "SELECT envelope FROM access.events WHERE type = 'byom.workspace.settings_changed.v1' "
        "AND workspace_id = %s"
    )
    async with await psycopg.AsyncConnection.connect(infra.database_url) as conn:
        rows = await (await conn.execute(query, (workspace.id,))).fetchall()
    assert [(r[0]["data"], r[0]["actorid"]) for r in rows] == [
        ({"allow_unpriced_models": False, "model_sources": None}, workspace.owner_id)
    ]
    member = await workspace.member("mia")
    token = await workspace.token_for(member["id"])
    refused = await workspace.client.patch(
        path, json={"allow_unpriced_models": True}, headers={"Authorization": f"Bearer {token}"}
    )
    assert refused.status_code == 403


@pytest.fixture
async def catalog_engine(infra: Infra, stack: Stack) -> AsyncIterator[AsyncEngine]:
    """The stack's catalog schema, to write and claim rows as another replica would."""
    engine = create_engine(normalise_database_url(infra.database_url), schema="catalog")
    yield engine
    await engine.dispose()


def expected(count: int, keep: Callable[[int, str, bool, ModelDetails], bool]) -> list[str]:
    found = []
    for n in range(count):
        provider, enabled, details = traits(n)
        if keep(n, provider, enabled, details):
            found.append(f"conn-{n % 20:03d}/model-{n:05d}")
    return sorted(found)


async def all_pages(workspace: Workspace, limit: int, **params: Any) -> list[str]:
    names: list[str] = []
    cursor = None
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        page = await workspace.ok("GET", "/catalog/v1/models", params=query)
        names += [m["name"] for m in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return names


async def test_thousands_of_models_page_and_filter_exactly(
    workspace: Workspace, catalog_engine: AsyncEngine
) -> None:
    """Every filter and every page of a 3000-model catalog finds exactly the models it should."""
    count = 3000
    await populate(catalog_engine, workspace.id, count=count)
    high = CostThresholds(10.0, 30.0)

    every = await all_pages(workspace, 500)

    assert every == expected(count, lambda *_: True)
    assert len(set(every)) == count
    cases: list[tuple[dict[str, Any], Callable[[int, str, bool, ModelDetails], bool]]] = [
        ({"provider": "anthropic"}, lambda n, p, e, d: p == "anthropic"),
        ({"capability": "vision"}, lambda n, p, e, d: "vision" in d.capabilities),
        (
            {"capability": "tools", "enabled": "true"},
            lambda n, p, e, d: bool(d.supports_tools) and e,
        ),
        ({"enabled": "false"}, lambda n, p, e, d: not e),
        ({"price_unknown": "true"}, lambda n, p, e, d: d.price is None),
        ({"high_cost": "true"}, lambda n, p, e, d: high.flags(d.price)),
        (
            {"high_cost": "false", "provider": "groq"},
            lambda n, p, e, d: not high.flags(d.price) and p == "groq",
        ),
        ({"q": "MODEL-0012"}, lambda n, p, e, d: f"{n:05d}".startswith("0012")),
        ({"q": "model 7"}, lambda n, p, e, d: "model 7" in f"model {n}"),
        ({"q": "%"}, lambda n, p, e, d: False),
    ]
    for params, keep in cases:
        assert await all_pages(workspace, 200, **params) == expected(count, keep), params

    bad = await workspace.call("GET", "/catalog/v1/models", params={"cursor": "not-a-cursor"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_cursor")
    unknown = await workspace.call("GET", "/catalog/v1/models", params={"capability": "telepathy"})
    assert unknown.status_code == 422
    typo = await workspace.call("GET", "/catalog/v1/models", params={"provider": "opanai"})
    assert typo.status_code == 422 and "openai" in typo.json()["error"]["message"]


async def test_replicas_claim_due_connections_without_overlap(
    infra: Infra, catalog_engine: AsyncEngine
) -> None:
    """Two replicas claiming at once on PostgreSQL never both get one connection."""
    other_engine = create_engine(normalise_database_url(infra.database_url), schema="catalog")
    try:
        due = await due_connections(catalog_engine, 30)
        now = datetime.now(UTC) + timedelta(days=2)
        lease = timedelta(minutes=5)

        # Other tests' connections are due by then too; the limit leaves room for all.
        first, second = await asyncio.gather(
            claim_due(catalog_engine, now, limit=500, lease=lease),
            claim_due(other_engine, now, limit=500, lease=lease),
        )
        again = await claim_due(catalog_engine, now, limit=100, lease=lease)
        after_lease = await claim_due(catalog_engine, now + lease * 2, limit=100, lease=lease)
    finally:
        await other_engine.dispose()

    mine = {c.connection_id for c in first}
    theirs = {c.connection_id for c in second}
    assert not mine & theirs
    assert due <= mine | theirs
    assert not {c.connection_id for c in again} & due
    assert due <= {c.connection_id for c in after_lease}


async def test_claims_work_the_same_on_sqlite(tmp_path: Path) -> None:
    """On SQLite a claimed connection is not claimed again until its lease ends."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'catalog.db'}", schema="catalog")
    try:
        await create_schema(engine, metadata)
        due = await due_connections(engine, 5)
        now = datetime.now(UTC) + timedelta(days=2)
        lease = timedelta(minutes=5)

        first = await claim_due(engine, now, limit=3, lease=lease)
        second = await claim_due(engine, now, limit=10, lease=lease)
        third = await claim_due(engine, now, limit=10, lease=lease)
        expired = await claim_due(engine, now + lease * 2, limit=10, lease=lease)
    finally:
        await engine.dispose()

    assert len(first) == 3
    assert {c.connection_id for c in first} | {c.connection_id for c in second} == due
    assert third == []
    assert {c.connection_id for c in expired} == due


async def due_connections(engine: AsyncEngine, count: int) -> set[str]:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    async with engine.begin() as conn:
        await conn.execute(
            insert(connections),
            [
                {
                    "id": cid,
                    "workspace": str(uuid.uuid4()),
                    "provider": "openai",
                    "name": unique("claim"),
                    "base_url": "http://127.0.0.1:9/v1",
                    # Due tomorrow: the tests claim as of the day after, while the running
                    # stack's scheduler, living in the present, leaves them alone.
                    "status": "active",
                    "next_sync_at": datetime.now(UTC) + timedelta(days=1),
                    "sync_failures": 0,
                    "new_model_action": "disabled",
                    "new_model_group_ids": [],
                }
                for cid in ids
            ],
        )
    return set(ids)
