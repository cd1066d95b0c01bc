"""keyvault as it runs: real access and keyvault processes, PostgreSQL, JetStream, and the emulator.

The emulator plays the provider and echoes a rejected key in its error text, as real
providers do. Every test hunts for the plain key where it must never be: responses, the
database, the event log, NATS and the services' logs.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
import psycopg
import pytest
from nats.js.api import DeliverPolicy

from shared.secrets import ProviderKey
from shared.service_auth import ServiceSigner
from tests.conftest import Infra
from tests.emulator import EmulatorState, running_emulator
from tests.stack import ROOT, Stack, free_port

pytestmark = pytest.mark.integration

CONNECTIONS = "/keyvault/v1/connections"


@dataclass
class Provider:
    state: EmulatorState
    base_url: str

    def new_key(self) -> str:
        """A key the emulated provider accepts from now on."""
        key = "sk-live-" + secrets.token_urlsafe(24)
        self.state.keys.add(key)
        return key


@dataclass
class Workspace:
    id: str
    owner_id: str
    admin: dict[str, str]
    member: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def database_url(infra: Infra) -> str:
    """This module's database, where the services keep their schemas and events."""
    return infra.database_url


@pytest.fixture(scope="module")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with infra.stack(
        log_dir=tmp_path_factory.mktemp("keyvault-logs"),
        services=("access", "keyvault"),
    ) as running:
        yield running


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[Provider]:
    state = EmulatorState(models=["gpt-a", "gpt-b"])
    async with running_emulator(state) as base_url:
        yield Provider(state, base_url)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=20.0, trust_env=False) as http:
        yield http


@pytest.fixture
async def workspace(stack: Stack, client: httpx.AsyncClient) -> Workspace:
    return await new_workspace(stack, client)


async def new_workspace(stack: Stack, client: httpx.AsyncClient) -> Workspace:
    """A fresh workspace with its owner's token and a member's token."""
    suffix = secrets.token_hex(4)
    created = await client.post(
        f"{stack.url('access')}/access/v1/workspaces",
        json={
            "name": f"ws-{suffix}",
            "owner_email": f"owner-{suffix}@example.com",
            "owner_name": "Owner",
        },
        headers={"Authorization": f"Bearer {stack.operator_token}"},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    admin = {"Authorization": f"Bearer {body['token']['token']}"}
    member = await client.post(
        f"{stack.url('access')}/access/v1/members",
        json={"email": f"member-{suffix}@example.com", "display_name": "Member"},
        headers=admin,
    )
    assert member.status_code == 201, member.text
    token = await client.post(
        f"{stack.url('access')}/access/v1/members/{member.json()['id']}/tokens",
        json={"name": "laptop"},
        headers=admin,
    )
    assert token.status_code == 201, token.text
    return Workspace(
        id=body["workspace"]["id"],
        owner_id=body["owner"]["id"],
        admin=admin,
        member={"Authorization": f"Bearer {token.json()['token']}"},
    )


def service_headers(
    stack: Stack, issuer: str = "proxy", audience: str = "keyvault"
) -> dict[str, str]:
    signer = ServiceSigner(stack.env["BYOM_SERVICE_SECRET"].encode())
    return {"Authorization": f"Bearer {signer.mint(issuer, audience)}"}


async def connect(
    stack: Stack,
    client: httpx.AsyncClient,
    ws: Workspace,
    provider: Provider,
    key: str,
    name: str | None = None,
) -> httpx.Response:
    return await client.post(
        stack.url("keyvault") + CONNECTIONS,
        json={
            "provider": "openai-compatible",
            "name": name or f"conn-{secrets.token_hex(4)}",
            "base_url": provider.base_url,
            "api_key": key,
        },
        headers=ws.admin,
    )


async def read_key(
    stack: Stack, client: httpx.AsyncClient, connection_id: str, **headers: str
) -> httpx.Response:
    return await client.get(
        f"{stack.url('keyvault')}/keyvault/internal/v1/connections/{connection_id}/key",
        headers=headers or service_headers(stack),
    )


def forms_of(key: str) -> list[str]:
    """The key as text, and as the hex and base64 a bytea column or a JSON dump would show."""
    raw = key.encode()
    return [key, raw.hex(), base64.b64encode(raw).decode()]


async def keyvault_rows(database_url: str) -> list[str]:
    """Every row of every table in the keyvault schema, as PostgreSQL prints it."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        tables = await conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'keyvault'"
        )
        rows: list[str] = []
        for (table,) in await tables.fetchall():
            cursor = await conn.execute(f'SELECT t::text FROM keyvault."{table}" t')  # noqa: S608
            rows.extend(row[0] for row in await cursor.fetchall())
        return rows


async def query(database_url: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(sql, params)  # type: ignore[arg-type]
        return await cursor.fetchall()


async def copy_secret(database_url: str, *, source: str, target: str) -> None:
    """Overwrite one connection's sealed secret with another's, as an attacker with the database could."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute(
            "UPDATE keyvault.connection_secrets AS target"
            " SET ciphertext = source.ciphertext, nonce = source.nonce,"
            " wrapped_data_key = source.wrapped_data_key, wrap_nonce = source.wrap_nonce,"
            " keyring_version = source.keyring_version, secret_version = source.secret_version"
            " FROM keyvault.connection_secrets AS source"
            " WHERE source.connection_id = %s AND target.connection_id = %s",
            (source, target),
        )


async def stored_events(database_url: str, connection_id: str) -> list[dict[str, Any]]:
    rows = await query(
        database_url,
        "SELECT envelope FROM keyvault.events WHERE stream_id = %s ORDER BY position",
        f"connection-{connection_id}",
    )
    return [row[0] for row in rows]


async def published_events(
    nats_url: str, prefix: str, connection_id: str, expected: int
) -> list[bytes]:
    """Raw messages on the keyvault subjects about one connection, once ``expected`` arrived."""
    nc = await nats.connect(nats_url)
    try:
        for _ in range(50):
            sub = await nc.jetstream().subscribe(
                f"{prefix}.keyvault.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
            )
            found: list[bytes] = []
            try:
                while True:
                    msg = await sub.next_msg(timeout=0.5)
                    if orjson.loads(msg.data)["data"].get("connection_id") == connection_id:
                        found.append(msg.data)
            except nats.errors.TimeoutError:
                pass
            await sub.unsubscribe()
            if len(found) >= expected:
                return found
            await asyncio.sleep(0.2)
        return found
    finally:
        await nc.close()


# Connecting


async def test_a_good_key_connects_and_only_its_mask_comes_back(
    stack: Stack, client: httpx.AsyncClient, workspace: Workspace, provider: Provider
) -> None:
    """A key the provider accepts is checked with the provider, stored, and answered masked only."""
    key = provider.new_key()

    answer = await connect(stack, client, workspace, provider, key, name="team-openai")

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["name"] == "team-openai"
    assert body["provider"] == "openai-compatible"
    assert body["base_url"] == provider.base_url
    assert body["status"] == "active"
    assert body["masked_key"] == ProviderKey(key).masked
    assert body["fingerprint"].startswith("hmac-sha256:")
    assert body["connected_by"] == workspace.owner_id
    assert not any(form in answer.text for form in forms_of(key))
    checks = [r for r in provider.state.requests_to("/models") if r.bearer == key]
    assert len(checks) == 1


async def test_a_rejected_key_stores_nothing_and_is_never_echoed(
    stack: Stack,
    client: httpx.AsyncClient,
    workspace: Workspace,
    provider: Provider,
    database_url: str,
) -> None:
    """A key the provider refuses gives 400 key_rejected, stores no connection, and the provider's echo of it stays out."""
    wrong = "sk-wrong-" + secrets.token_urlsafe(24)
    echoed = await client.get(
        provider.base_url + "/models", headers={"Authorization": f"Bearer {wrong}"}
    )
    assert wrong in echoed.text  # the provider does quote the key back

    answer = await connect(stack, client, workspace, provider, wrong, name="rejected-one")

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "key_rejected"
    assert error["message"].startswith("openai-compatible rejected the key")
    assert not any(form in answer.text for form in forms_of(wrong))
    assert [r.bearer for r in provider.state.requests_to("/models")].count(wrong) == 2
    listed = await client.get(stack.url("keyvault") + CONNECTIONS, headers=workspace.admin)
    assert listed.json() == {"data": []}
    assert (
        await query(
            database_url,
            "SELECT id FROM keyvault.connections WHERE workspace_id = %s",
            workspace.id,
        )
        == []
    )
    audit = await query(
        database_url,
        "SELECT envelope FROM keyvault.events WHERE workspace_id = %s",
        workspace.id,
    )
    assert [row[0]["type"] for row in audit] == ["byom.provider.verification_failed.v1"]
    assert audit[0][0]["data"]["connection_name"] == "rejected-one"
    assert not any(form in orjson.dumps(audit).decode() for form in forms_of(wrong))


async def test_an_unreachable_provider_answers_502_and_stores_nothing(
    stack: Stack,
    client: httpx.AsyncClient,
    workspace: Workspace,
    provider: Provider,
    database_url: str,
) -> None:
    """A provider that fails with 503 during the check gives 502 provider_unavailable and no connection."""
    key = provider.new_key()
    provider.state.fail_next(503)

    answer = await connect(stack, client, workspace, provider, key)

    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "provider_unavailable"
    assert (
        await query(
            database_url,
            "SELECT id FROM keyvault.connections WHERE workspace_id = %s",
            workspace.id,
        )
        == []
    )


async def test_names_are_unique_per_workspace_and_checked_before_the_provider(
    stack: Stack, client: httpx.AsyncClient, workspace: Workspace, provider: Provider
) -> None:
    """A second active connection with the same name is 409 without a key check; another workspace may use it."""
    assert (
        await connect(stack, client, workspace, provider, provider.new_key(), name="shared")
    ).status_code == 201
    second_key = provider.new_key()

    taken = await connect(stack, client, workspace, provider, second_key, name="shared")
    other = await new_workspace(stack, client)
    elsewhere = await connect(stack, client, other, provider, provider.new_key(), name="shared")

    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "connection_name_taken"
    assert not [r for r in provider.state.requests if r.bearer == second_key]
    assert elsewhere.status_code == 201


async def test_two_admins_racing_for_one_name_get_one_connection(
    stack: Stack, client: httpx.AsyncClient, workspace: Workspace, provider: Provider
) -> None:
    """Two connects with one name that both pass the early check end as one 201 and one 409."""
    provider.state.delay = 0.3  # both key checks are in flight before either saves
    try:
        answers = await asyncio.gather(
            connect(stack, client, workspace, provider, provider.new_key(), name="raced"),
            connect(stack, client, workspace, provider, provider.new_key(), name="raced"),
        )
    finally:
        provider.state.delay = 0.0

    assert sorted(a.status_code for a in answers) == [201, 409]
    listed = await client.get(stack.url("keyvault") + CONNECTIONS, headers=workspace.admin)
    assert [c["name"] for c in listed.json()["data"]] == ["raced"]


async def test_requests_that_break_the_rules_are_refused_without_echoing_the_key(
    stack: Stack, client: httpx.AsyncClient, workspace: Workspace, provider: Provider
) -> None:
    """Bad names, base URLs with credentials, a missing base URL and a multi-line key are 422 and never quoted."""
    key = provider.new_key()
    base = {
        "provider": "openai-compatible",
        "name": "ok",
        "base_url": provider.base_url,
        "api_key": key,
    }
    cases = [
        {**base, "name": "Not A Slug"},
        {**base, "base_url": provider.base_url.replace("http://", f"http://user:{key}@")},
        {**base, "base_url": None},
        {**base, "base_url": "http://169.254.169.254/v1"},
        {**base, "provider": "carrier-pigeon"},
        {**base, "api_key": key + "\nsecond-line"},
    ]

    answers = [
        await client.post(stack.url("keyvault") + CONNECTIONS, json=case, headers=workspace.admin)
        for case in cases
    ]

    assert [a.status_code for a in answers] == [422] * len(cases)
    assert all(a.json()["error"]["code"] == "invalid_request" for a in answers)
    assert not any(form in a.text for a in answers for form in forms_of(key))
    assert not [r for r in provider.state.requests if r.bearer == key]


async def test_admin_routes_need_an_admin_of_the_same_workspace(
    stack: Stack, client: httpx.AsyncClient, workspace: Workspace, provider: Provider
) -> None:
    """No token is 401, a member is 403, and another workspace's admin sees 404 for every route."""
    created = (await connect(stack, client, workspace, provider, provider.new_key())).json()
    one = f"{stack.url('keyvault')}{CONNECTIONS}/{created['id']}"
    other = await new_workspace(stack, client)

    assert (await client.get(stack.url("keyvault") + CONNECTIONS)).status_code == 401
    assert (
        await client.get(stack.url("keyvault") + CONNECTIONS, headers=workspace.member)
    ).status_code == 403
    assert (await client.get(one, headers=other.admin)).status_code == 404
    assert (
        await client.put(one + "/key", json={"api_key": provider.new_key()}, headers=other.admin)
    ).status_code == 404
    assert (await client.delete(one, headers=other.admin)).status_code == 404
    assert (await client.get(stack.url("keyvault") + CONNECTIONS, headers=other.admin)).json() == {
        "data": []
    }
    assert (await client.get(one, headers=workspace.admin)).json()["status"] == "active"


# What the database holds


async def test_the_database_holds_no_plaintext_key(
    stack: Stack,
    client: httpx.AsyncClient,
    workspace: Workspace,
    provider: Provider,
    database_url: str,
) -> None:
    """No row of any keyvault table holds the key, as text, hex or base64, after connect, rotate and read."""
    first, second = provider.new_key(), provider.new_key()
    created = (await connect(stack, client, workspace, provider, first)).json()
    await client.put(
        f"{stack.url('keyvault')}{CONNECTIONS}/{created['id']}/key",
        json={"api_key": second},
        headers=workspace.admin,
    )
    assert (await read_key(stack, client, created["id"])).json()["api_key"] == second

    rows = await keyvault_rows(database_url)

    assert any(created["id"] in row for row in rows)
    assert not [
        row for row in rows for key in (first, second) for form in forms_of(key) if form in row
    ]
    sealed = await query(
        database_url,
        "SELECT secret_version, keyring_version, length(nonce), wrapped_data_key IS NOT NULL"
        " FROM keyvault.connection_secrets WHERE connection_id = %s",
        created["id"],
    )
    assert sealed == [(2, "2", 12, True)]


# The internal key route


async def test_the_internal_route_gives_the_key_to_services_only(
    stack: Stack, client: httpx.AsyncClient, workspace: Workspace, provider: Provider
) -> None:
    """A key-reading service gets the plain key; no credential is 401, gateway tokens and other services are refused."""
    key = provider.new_key()
    created = (await connect(stack, client, workspace, provider, key)).json()
    connection_id = created["id"]

    granted = await read_key(stack, client, connection_id)
    refused = {
        "none": await client.get(
            f"{stack.url('keyvault')}/keyvault/internal/v1/connections/{connection_id}/key"
        ),
        "admin": await read_key(stack, client, connection_id, **workspace.admin),
        "member": await read_key(stack, client, connection_id, **workspace.member),
        "operator": await read_key(
            stack, client, connection_id, Authorization=f"Bearer {stack.operator_token}"
        ),
        "other audience": await read_key(
            stack, client, connection_id, **service_headers(stack, audience="access")
        ),
        "forged": await read_key(
            stack, client, connection_id, Authorization="Bearer svc1.e30.forged"
        ),
        "not a key reader": await read_key(
            stack, client, connection_id, **service_headers(stack, issuer="access")
        ),
    }
    unknown = await read_key(stack, client, str(uuid.uuid4()))

    assert granted.status_code == 200
    assert granted.headers["cache-control"] == "no-store"
    assert granted.json() == {
        "connection_id": connection_id,
        "workspace_id": workspace.id,
        "provider": "openai-compatible",
        "base_url": provider.base_url,
        "api_key": key,
    }
    assert {name: r.status_code for name, r in refused.items()} == {
        "none": 401,
        "admin": 403,
        "member": 403,
        "operator": 403,
        "other audience": 401,
        "forged": 401,
        "not a key reader": 403,
    }
    assert not any(key in r.text for r in refused.values())
    assert unknown.status_code == 404


async def test_admins_see_how_often_a_key_was_read(
    stack: Stack, client: httpx.AsyncClient, workspace: Workspace, provider: Provider
) -> None:
    """Each internal read is counted per reading service and key version, shown on the connection and as a metric."""
    created = (await connect(stack, client, workspace, provider, provider.new_key())).json()
    one = f"{stack.url('keyvault')}{CONNECTIONS}/{created['id']}"
    as_catalog = service_headers(stack, issuer="catalog")
    before = (await client.get(one, headers=workspace.admin)).json()

    for _ in range(3):
        assert (await read_key(stack, client, created["id"])).status_code == 200
    assert (await read_key(stack, client, created["id"], **as_catalog)).status_code == 200
    rotated = await client.put(
        one + "/key", json={"api_key": provider.new_key()}, headers=workspace.admin
    )
    assert rotated.status_code == 200, rotated.text
    assert (await read_key(stack, client, created["id"])).status_code == 200
    after = (await client.get(one, headers=workspace.admin)).json()
    listed = (await client.get(stack.url("keyvault") + CONNECTIONS, headers=workspace.admin)).json()
    metrics = (await client.get(f"{stack.url('keyvault')}/keyvault/metrics")).text

    assert (before["read_count"], before["last_read_at"], before["reads"]) == (0, None, [])
    assert after["read_count"] == 5
    assert after["last_read_at"] is not None
    assert after["secret_version"] == 2
    assert [(r["reader"], r["secret_version"], r["read_count"]) for r in after["reads"]] == [
        ("proxy", 2, 1),
        ("catalog", 1, 1),
        ("proxy", 1, 3),
    ]
    assert all(r["first_read_at"] <= r["last_read_at"] for r in after["reads"])
    assert next(c for c in listed["data"] if c["id"] == created["id"])["reads"] == after["reads"]
    assert 'byom_keyvault_key_reads_total{byom_key_reader="proxy"' in metrics
    assert 'byom_keyvault_key_reads_total{byom_key_reader="catalog"' in metrics


async def test_a_secret_copied_onto_another_row_fails_loudly(
    stack: Stack,
    client: httpx.AsyncClient,
    workspace: Workspace,
    provider: Provider,
    database_url: str,
) -> None:
    """One connection's sealed secret copied onto another's row makes that read 500 secret_unreadable, never a key."""
    key_a, key_b = provider.new_key(), provider.new_key()
    a = (await connect(stack, client, workspace, provider, key_a)).json()
    b = (await connect(stack, client, workspace, provider, key_b)).json()
    await copy_secret(database_url, source=a["id"], target=b["id"])

    moved = await read_key(stack, client, b["id"])
    original = await read_key(stack, client, a["id"])
    # Shred the broken row so later tests that walk every secret do not trip over it.
    await client.delete(f"{stack.url('keyvault')}{CONNECTIONS}/{b['id']}", headers=workspace.admin)

    assert moved.status_code == 500
    assert moved.json()["error"]["code"] == "secret_unreadable"
    assert key_a not in moved.text
    assert key_b not in moved.text
    assert original.json()["api_key"] == key_a
    assert '"secret_unreadable"' in stack.logs()


# Rotating and disconnecting


async def test_rotating_to_a_good_key_replaces_the_secret(
    stack: Stack,
    client: httpx.AsyncClient,
    workspace: Workspace,
    provider: Provider,
    database_url: str,
) -> None:
    """A new key the provider accepts replaces the old one: new mask, new key on the internal route, one event."""
    old, new = provider.new_key(), provider.new_key()
    created = (await connect(stack, client, workspace, provider, old)).json()

    rotated = await client.put(
        f"{stack.url('keyvault')}{CONNECTIONS}/{created['id']}/key",
        json={"api_key": new},
        headers=workspace.admin,
    )

    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["masked_key"] == ProviderKey(new).masked
    assert rotated.json()["fingerprint"] != created["fingerprint"]
    assert rotated.json()["key_rotated_at"] is not None
    assert not any(form in rotated.text for form in forms_of(new))
    assert (await read_key(stack, client, created["id"])).json()["api_key"] == new
    events = await stored_events(database_url, created["id"])
    assert [e["type"] for e in events] == [
        "byom.provider.connected.v1",
        "byom.provider.key_rotated.v1",
    ]
    assert events[1]["data"]["masked_key"] == ProviderKey(new).masked


async def test_rotating_to_a_rejected_key_keeps_the_old_one(
    stack: Stack,
    client: httpx.AsyncClient,
    workspace: Workspace,
    provider: Provider,
    database_url: str,
) -> None:
    """A new key the provider refuses is 400 key_rejected; the old key and mask stay, and the refusal is recorded."""
    old, wrong = provider.new_key(), "sk-wrong-" + secrets.token_urlsafe(24)
    created = (await connect(stack, client, workspace, provider, old)).json()

    rotated = await client.put(
        f"{stack.url('keyvault')}{CONNECTIONS}/{created['id']}/key",
        json={"api_key": wrong},
        headers=workspace.admin,
    )

    assert rotated.status_code == 400
    assert rotated.json()["error"]["code"] == "key_rejected"
    assert not any(form in rotated.text for form in forms_of(wrong))
    assert (await read_key(stack, client, created["id"])).json()["api_key"] == old
    current = await client.get(
        f"{stack.url('keyvault')}{CONNECTIONS}/{created['id']}", headers=workspace.admin
    )
    assert current.json()["masked_key"] == created["masked_key"]
    events = await stored_events(database_url, created["id"])
    assert [e["type"] for e in events] == [
        "byom.provider.connected.v1",
        "byom.provider.verification_failed.v1",
    ]


async def test_disconnecting_shreds_the_key(
    stack: Stack,
    client: httpx.AsyncClient,
    workspace: Workspace,
    provider: Provider,
    database_url: str,
) -> None:
    """After disconnect the internal route is 404, the wrapped data key is gone, and a second disconnect changes nothing."""
    created = (await connect(stack, client, workspace, provider, provider.new_key())).json()
    one = f"{stack.url('keyvault')}{CONNECTIONS}/{created['id']}"

    first = await client.delete(one, headers=workspace.admin)
    second = await client.delete(one, headers=workspace.admin)

    assert (first.status_code, second.status_code) == (204, 204)
    assert (await read_key(stack, client, created["id"])).status_code == 404
    shown = (await client.get(one, headers=workspace.admin)).json()
    assert shown["status"] == "disconnected"
    assert shown["disconnected_at"] is not None
    secret = await query(
        database_url,
        "SELECT wrapped_data_key, wrap_nonce FROM keyvault.connection_secrets WHERE connection_id = %s",
        created["id"],
    )
    assert secret == [(None, None)]
    rotate = await client.put(
        one + "/key", json={"api_key": provider.new_key()}, headers=workspace.admin
    )
    assert rotate.status_code == 409
    assert rotate.json()["error"]["code"] == "connection_disconnected"
    events = await stored_events(database_url, created["id"])
    assert [e["type"] for e in events] == [
        "byom.provider.connected.v1",
        "byom.provider.disconnected.v1",
    ]
    again = await connect(
        stack, client, workspace, provider, provider.new_key(), name=created["name"]
    )
    assert again.status_code == 201  # a disconnected connection frees its name


# Events and logs


async def run_whole_lifecycle(
    stack: Stack, client: httpx.AsyncClient, ws: Workspace, provider: Provider
) -> tuple[str, list[str]]:
    """Connect, fail a connect, rotate (refused, then accepted), read, disconnect; the keys used."""
    first, second, wrong = (
        provider.new_key(),
        provider.new_key(),
        "sk-wrong-" + secrets.token_urlsafe(24),
    )
    created = (await connect(stack, client, ws, provider, first)).json()
    one = f"{stack.url('keyvault')}{CONNECTIONS}/{created['id']}"
    assert (await connect(stack, client, ws, provider, wrong)).status_code == 400
    assert (
        await client.put(one + "/key", json={"api_key": wrong}, headers=ws.admin)
    ).status_code == 400
    assert (
        await client.put(one + "/key", json={"api_key": second}, headers=ws.admin)
    ).status_code == 200
    assert (await read_key(stack, client, created["id"])).status_code == 200
    assert (await client.delete(one, headers=ws.admin)).status_code == 204
    return created["id"], [first, second, wrong]


async def test_events_in_the_log_and_on_nats_carry_no_key(
    stack: Stack,
    client: httpx.AsyncClient,
    workspace: Workspace,
    provider: Provider,
    database_url: str,
    infra: Infra,
) -> None:
    """A whole lifecycle's events, in keyvault.events and as published on NATS, hold masks and fingerprints, never a key."""
    connection_id, keys = await run_whole_lifecycle(stack, client, workspace, provider)

    stored = await stored_events(database_url, connection_id)
    published = await published_events(
        stack.env["BYOM_NATS_URL"], infra.prefix, connection_id, len(stored)
    )

    assert [e["type"] for e in stored] == [
        "byom.provider.connected.v1",
        "byom.provider.verification_failed.v1",
        "byom.provider.key_rotated.v1",
        "byom.provider.disconnected.v1",
    ]
    assert all(
        e["actorid"] == workspace.owner_id and e["workspaceid"] == workspace.id for e in stored
    )
    assert sorted(orjson.loads(m)["id"] for m in published) == sorted(e["id"] for e in stored)
    everything = orjson.dumps(stored).decode() + "".join(m.decode() for m in published)
    assert not [form for key in keys for form in forms_of(key) if form in everything]


async def test_no_log_line_holds_a_key(
    stack: Stack, client: httpx.AsyncClient, workspace: Workspace, provider: Provider
) -> None:
    """After a whole lifecycle, including a rejected key the provider echoed, no service logged any key."""
    _, keys = await run_whole_lifecycle(stack, client, workspace, provider)
    await asyncio.sleep(0.5)  # let the services flush their last lines

    logs = stack.logs()

    assert "http_request" in logs
    assert not [form for key in keys for form in forms_of(key) if form in logs]


def test_keyvault_refuses_to_start_with_a_broken_keyring(stack: Stack) -> None:
    """With an active keyring version that has no entry, keyvault exits at once, saying so, and prints no key."""
    document = orjson.loads(stack.env["BYOM_KEYRING"])
    broken = orjson.dumps({**document, "active": "9"}).decode()
    env = {**os.environ, **stack.env, "BYOM_KEYRING": broken}

    finished = subprocess.run(
        [sys.executable, "-m", "services.keyvault", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )

    output = finished.stdout.decode() + finished.stderr.decode()
    assert finished.returncode != 0
    assert (
        "KeyringInvalid: BYOM_KEYRING: the active version '9' is not in the keyring (1, 2)"
        in output
    )
    secrets_in_keyring = [*document["keys"].values(), document["fingerprint_key"]]
    assert not [s for s in secrets_in_keyring if s in output]


def test_keyvault_reads_a_keyring_file(stack: Stack, tmp_path: Path) -> None:
    """BYOM_KEYRING_FILE alone is enough for keyvault to start and answer its health check."""
    keyring_file = tmp_path / "keyring.json"
    keyring_file.write_text(stack.env["BYOM_KEYRING"])
    port = free_port()
    env = {
        key: value for key, value in {**os.environ, **stack.env}.items() if key != "BYOM_KEYRING"
    }
    env["BYOM_KEYRING_FILE"] = str(keyring_file)

    process = subprocess.Popen(
        [sys.executable, "-m", "services.keyvault", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        healthy = False
        for _ in range(150):
            try:
                healthy = (
                    httpx.get(
                        f"http://127.0.0.1:{port}/keyvault/readyz", timeout=1.0, trust_env=False
                    ).status_code
                    == 200
                )
            except httpx.HTTPError:
                healthy = False
            if healthy or process.poll() is not None:
                break
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=30)

    assert healthy


def rewrap_under(
    stack: Stack, active: str, command: tuple[str, ...] = ("services.keyvault.rewrap",)
) -> subprocess.CompletedProcess[bytes]:
    """Run the rewrap command with the stack's keyring, ``active`` being its active version."""
    keyring = orjson.dumps({**orjson.loads(stack.env["BYOM_KEYRING"]), "active": active}).decode()
    return subprocess.run(
        [sys.executable, "-m", *command],
        cwd=ROOT,
        env={**os.environ, **stack.env, "BYOM_KEYRING": keyring},
        capture_output=True,
        timeout=60,
        check=False,
    )


async def test_rewrap_moves_keys_between_keyring_versions_and_old_entries_still_decrypt(
    stack: Stack,
    client: httpx.AsyncClient,
    workspace: Workspace,
    provider: Provider,
    database_url: str,
) -> None:
    """Secrets rewrapped under keyring version 1 still open in the running keyvault (active 2); rewrapping moves them back."""
    key = provider.new_key()
    created = (await connect(stack, client, workspace, provider, key)).json()
    gone = (await connect(stack, client, workspace, provider, provider.new_key())).json()
    await client.delete(
        f"{stack.url('keyvault')}{CONNECTIONS}/{gone['id']}", headers=workspace.admin
    )
    versions = "SELECT keyring_version, wrapped_data_key IS NULL FROM keyvault.connection_secrets WHERE connection_id = %s"

    to_1 = await asyncio.to_thread(rewrap_under, stack, "1")
    under_1 = await query(database_url, versions, created["id"])
    read_under_1 = await read_key(stack, client, created["id"])
    to_2 = await asyncio.to_thread(rewrap_under, stack, "2")
    under_2 = await query(database_url, versions, created["id"])

    assert (to_1.returncode, to_2.returncode) == (0, 0)
    assert under_1 == [("1", False)]
    assert read_under_1.json()["api_key"] == key
    assert under_2 == [("2", False)]
    assert (await read_key(stack, client, created["id"])).json()["api_key"] == key
    assert await query(database_url, versions, gone["id"]) == [("2", True)]
    left_behind = await query(
        database_url,
        "SELECT count(*) FROM keyvault.connection_secrets WHERE keyring_version <> '2'",
    )
    assert left_behind == [(0,)]


async def test_rewrap_leaves_a_tampered_secret_alone_and_fails(
    stack: Stack,
    client: httpx.AsyncClient,
    workspace: Workspace,
    provider: Provider,
    database_url: str,
) -> None:
    """A secret that does not open stops nothing else from moving, is logged by connection id, and makes rewrap exit 1."""
    good = (await connect(stack, client, workspace, provider, provider.new_key())).json()
    bad = (await connect(stack, client, workspace, provider, provider.new_key())).json()
    await copy_secret(database_url, source=good["id"], target=bad["id"])
    versions = "SELECT keyring_version FROM keyvault.connection_secrets WHERE connection_id = %s"

    failed = await asyncio.to_thread(rewrap_under, stack, "1")
    good_version, bad_version = (
        await query(database_url, versions, good["id"]),
        await query(database_url, versions, bad["id"]),
    )
    await client.delete(
        f"{stack.url('keyvault')}{CONNECTIONS}/{bad['id']}", headers=workspace.admin
    )
    restored = await asyncio.to_thread(rewrap_under, stack, "2")

    assert failed.returncode == 1
    assert (good_version, bad_version) == ([("1",)], [("2",)])
    unreadable = [
        line
        for line in failed.stdout.decode().splitlines() + failed.stderr.decode().splitlines()
        if '"secret_unreadable"' in line
    ]
    assert len(unreadable) == 1
    assert orjson.loads(unreadable[0])["connection_id"] == bad["id"]
    assert restored.returncode == 0


async def keyring_events_after(database_url: str, position: int) -> list[dict[str, Any]]:
    rows = await query(
        database_url,
        "SELECT envelope FROM keyvault.events"
        " WHERE type = 'byom.keyring.secrets_rewrapped.v1' AND position > %s ORDER BY position",
        position,
    )
    return [row[0] for row in rows]


async def last_position(database_url: str) -> int:
    rows = await query(database_url, "SELECT coalesce(max(position), 0) FROM keyvault.events")
    return int(rows[0][0])


async def live_secrets_not_under(database_url: str, version: str) -> int:
    rows = await query(
        database_url,
        "SELECT count(*) FROM keyvault.connection_secrets"
        " WHERE wrapped_data_key IS NOT NULL AND keyring_version <> %s",
        version,
    )
    return int(rows[0][0])


async def published_keyring_events(nats_url: str, prefix: str, ids: set[str]) -> set[str]:
    """Ids of keyring events on NATS, polled until all of ``ids`` arrived or a deadline."""
    found: set[str] = set()
    nc = await nats.connect(nats_url)
    try:
        for _ in range(40):
            sub = await nc.jetstream().subscribe(
                f"{prefix}.keyvault.keyring.secrets_rewrapped",
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.ALL,
            )
            try:
                while True:
                    msg = await sub.next_msg(timeout=0.3)
                    found.add(orjson.loads(msg.data)["id"])
            except nats.errors.TimeoutError:
                pass
            await sub.unsubscribe()
            if ids <= found:
                break
            await asyncio.sleep(0.2)
    finally:
        await nc.close()
    return found


async def test_each_rewrap_is_recorded_as_an_event_counting_what_it_moved(
    stack: Stack,
    client: httpx.AsyncClient,
    workspace: Workspace,
    provider: Provider,
    database_url: str,
    infra: Infra,
) -> None:
    """`python -m services.keyvault rewrap` appends keyring.secrets_rewrapped with how many secrets moved (0 when none), published on NATS."""
    for _ in range(2):
        await connect(stack, client, workspace, provider, provider.new_key())
    start = await last_position(database_url)
    to_move = await live_secrets_not_under(database_url, "1")

    to_1 = await asyncio.to_thread(rewrap_under, stack, "1", ("services.keyvault", "rewrap"))
    nothing_left = await asyncio.to_thread(
        rewrap_under, stack, "1", ("services.keyvault", "rewrap")
    )
    back = await asyncio.to_thread(rewrap_under, stack, "2")
    events = await keyring_events_after(database_url, start)
    published = await published_keyring_events(
        stack.env["BYOM_NATS_URL"], infra.prefix, {e["id"] for e in events}
    )

    assert (to_1.returncode, nothing_left.returncode, back.returncode) == (0, 0, 0)
    assert to_move >= 2
    assert [
        (e["data"]["keyring_version"], e["data"]["rewrapped"], e["data"]["unreadable"])
        for e in events
    ] == [("1", to_move, 0), ("1", 0, 0), ("2", to_move, 0)]
    assert {e["data"]["via"] for e in events} == {"command"}
    assert [e["subject"] for e in events] == ["keyring-1", "keyring-1", "keyring-2"]
    assert all(e.get("workspaceid") is None for e in events)
    assert {e["id"] for e in events} <= published
    assert await live_secrets_not_under(database_url, "2") == 0


async def test_the_operator_alone_may_rewrap_over_http(
    stack: Stack,
    client: httpx.AsyncClient,
    workspace: Workspace,
    provider: Provider,
    database_url: str,
) -> None:
    """POST /keyvault/v1/keyring/rewrap moves every secret to the active version for the operator; gateway tokens get 403, anything else 401."""
    key = provider.new_key()
    created = (await connect(stack, client, workspace, provider, key)).json()
    assert (await asyncio.to_thread(rewrap_under, stack, "1")).returncode == 0
    to_move = await live_secrets_not_under(database_url, "2")
    url = f"{stack.url('keyvault')}/keyvault/v1/keyring/rewrap"
    start = await last_position(database_url)

    refused = {
        "none": await client.post(url),
        "admin": await client.post(url, headers=workspace.admin),
        "member": await client.post(url, headers=workspace.member),
        "service": await client.post(url, headers=service_headers(stack)),
        "wrong": await client.post(
            url, headers={"Authorization": f"Bearer op-{secrets.token_urlsafe(24)}"}
        ),
    }
    moved_before_operator = await live_secrets_not_under(database_url, "2")
    answer = await client.post(url, headers={"Authorization": f"Bearer {stack.operator_token}"})
    events = await keyring_events_after(database_url, start)

    assert {name: r.status_code for name, r in refused.items()} == {
        "none": 401,
        "admin": 403,
        "member": 403,
        "service": 401,
        "wrong": 401,
    }
    assert moved_before_operator == to_move >= 1
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["keyring_version"] == "2"
    assert report["rewrapped"] == to_move
    assert report["unreadable"] == []
    assert [e["id"] for e in events] == [report["event_id"]]
    assert events[0]["data"]["via"] == "api"
    assert events[0]["actorid"] == "operator"
    assert await live_secrets_not_under(database_url, "2") == 0
    assert (await read_key(stack, client, created["id"])).json()["api_key"] == key


# Fingerprints


def fingerprint_key(stack: Stack) -> bytes:
    return base64.b64decode(orjson.loads(stack.env["BYOM_KEYRING"])["fingerprint_key"])


async def test_one_key_has_one_fingerprint_across_connections_and_workspaces(
    stack: Stack, client: httpx.AsyncClient, workspace: Workspace, provider: Provider
) -> None:
    """One key connected twice in a workspace and once in another shows one fingerprint, the HMAC under the install's fingerprint key; another key differs."""
    key, other_key = provider.new_key(), provider.new_key()
    elsewhere = await new_workspace(stack, client)

    first = (await connect(stack, client, workspace, provider, key)).json()
    second = (await connect(stack, client, workspace, provider, key)).json()
    third = (await connect(stack, client, elsewhere, provider, key)).json()
    different = (await connect(stack, client, workspace, provider, other_key)).json()

    digest = hmac.new(fingerprint_key(stack), key.encode(), hashlib.sha256).hexdigest()
    assert first["fingerprint"] == second["fingerprint"] == third["fingerprint"]
    assert first["fingerprint"] == f"hmac-sha256:{digest[:32]}"
    assert different["fingerprint"] != first["fingerprint"]
    assert hashlib.sha256(key.encode()).hexdigest()[:32] not in first["fingerprint"]
    assert len({first["id"], second["id"], third["id"]}) == 3


def restart_keyvault(stack: Stack, env: dict[str, str]) -> None:
    stack.stop("keyvault")
    stack.extra_env["keyvault"] = env
    stack.start("keyvault")


async def test_another_fingerprint_key_gives_the_same_key_another_fingerprint(
    stack: Stack, client: httpx.AsyncClient, workspace: Workspace, provider: Provider
) -> None:
    """keyvault restarted with a new fingerprint key fingerprints the same key differently, and still opens the secrets it holds."""
    key = provider.new_key()
    before = (await connect(stack, client, workspace, provider, key)).json()
    document = orjson.loads(stack.env["BYOM_KEYRING"])
    changed = {**document, "fingerprint_key": base64.b64encode(secrets.token_bytes(32)).decode()}

    await asyncio.to_thread(
        restart_keyvault, stack, {"BYOM_KEYRING": orjson.dumps(changed).decode()}
    )
    try:
        after = (await connect(stack, client, workspace, provider, key)).json()
        still_open = await read_key(stack, client, before["id"])
    finally:
        await asyncio.to_thread(restart_keyvault, stack, {})

    assert after["fingerprint"] != before["fingerprint"]
    assert still_open.json()["api_key"] == key
