"""access on a SQLite file, as ``make run`` starts it on a laptop: the same answers to
duplicates, removal, roles and directory searches as on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Infra
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    files = Path(tmp_path_factory.mktemp("access-sqlite"))
    with running_stack(
        services=("access",),
        database_url=f"sqlite+aiosqlite:///{files / 'access.db'}",
        nats_url=infra.nats_url,
        stream=infra.stream,
        subject_prefix=infra.prefix,
        log_dir=files / "logs",
    ) as running:
        yield running


@pytest.fixture
async def admin(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """An owner's client for a fresh workspace."""
    async with httpx.AsyncClient(base_url=stack.url("access"), timeout=10.0) as client:
        created = await client.post(
            "/access/v1/workspaces",
            json={"name": "laptop", "owner_email": "owner@example.com", "owner_name": "Owner"},
            headers={"Authorization": f"Bearer {stack.operator_token}"},
        )
        assert created.status_code == 201, created.text
        client.headers["Authorization"] = f"Bearer {created.json()['token']['token']}"
        yield client


async def add(admin: httpx.AsyncClient, email: str, name: str) -> httpx.Response:
    return await admin.post("/access/v1/members", json={"email": email, "display_name": name})


async def found(admin: httpx.AsyncClient, q: str) -> list[str]:
    response = await admin.get("/access/v1/directory", params={"q": q})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return [entry["name"] for entry in data]


async def test_duplicates_are_conflicts_not_server_errors(admin: httpx.AsyncClient) -> None:
    """A second member with the same email in another case, or a second group of the same
    name, is a 409 on SQLite too."""
    assert (await add(admin, "ada@example.com", "Ada")).status_code == 201
    again = await add(admin, "ADA@example.com", "Ada again")
    first_group = await admin.post("/access/v1/groups", json={"name": "Legal"})
    second_group = await admin.post("/access/v1/groups", json={"name": "legal"})

    assert again.status_code == 409
    assert again.json()["error"]["code"] == "email_taken"
    assert (first_group.status_code, second_group.status_code) == (201, 409)


async def test_removal_role_reactivation_and_search(admin: httpx.AsyncClient) -> None:
    """Roles change, a suspension lifts, a removed email joins again, and LIKE wildcards in
    a search match only themselves."""
    member = (await add(admin, "grace@example.com", "100% Grace_H")).json()
    await add(admin, "plain@example.com", "100 Grace H")

    promoted = await admin.put(f"/access/v1/members/{member['id']}/role", json={"role": "admin"})
    await admin.post(f"/access/v1/members/{member['id']}/deactivate")
    reactivated = await admin.post(f"/access/v1/members/{member['id']}/reactivate")
    searches = [await found(admin, q) for q in ("%", "e_h", "GRACE")]
    removed = await admin.delete(f"/access/v1/members/{member['id']}")
    rejoined = await add(admin, "Grace@example.com", "Grace")

    assert promoted.json()["role"] == "admin"
    assert reactivated.json()["active"] is True
    assert searches == [
        ["100% Grace_H"],
        ["100% Grace_H"],
        # grace@example.com starts with the query: a prefix match comes first.
        ["100% Grace_H", "100 Grace H"],
    ]
    assert removed.status_code == 204
    assert rejoined.status_code == 201
    assert rejoined.json()["id"] != member["id"]
