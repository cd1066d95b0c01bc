"""People in a workspace as access runs them: roles, reactivation, removal, the access
dialog's directory search, and the answers to "who may use M" and "what may P use".

access runs as its own process on real PostgreSQL and NATS; models become known to it
through catalog events on the stream, as in production.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import psycopg
import pytest
from nats.js import JetStreamContext

from tests.conftest import Infra
from tests.integration.test_access_service import (
    Workspace,
    add_member,
    bearer,
    create_group,
    discover_model,
    grant_once_known,
    introspect,
    issue_token,
    new_workspace,
    stored_events,
    suffix,
)
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        services=("access",),
        database_url=infra.database_url,
        nats_url=infra.nats_url,
        stream=infra.stream,
        subject_prefix=infra.prefix,
        log_dir=Path(tmp_path_factory.mktemp("access-people-logs")),
    ) as running:
        yield running


@pytest.fixture
def database_url(infra: Infra) -> str:
    return infra.database_url


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url("access"), timeout=10.0) as http:
        yield http


@pytest.fixture(scope="module")
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()


async def person(
    client: httpx.AsyncClient, ws: Workspace, name: str, email: str, role: str = "member"
) -> dict[str, Any]:
    response = await client.post(
        "/access/v1/members",
        json={"email": email, "display_name": name, "role": role},
        headers=bearer(ws.token),
    )
    assert response.status_code == 201, response.text
    member: dict[str, Any] = response.json()
    return member


async def group_named(client: httpx.AsyncClient, ws: Workspace, name: str) -> str:
    response = await client.post("/access/v1/groups", json={"name": name}, headers=bearer(ws.token))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def set_role(
    client: httpx.AsyncClient, ws: Workspace, user_id: str, role: str, token: str | None = None
) -> httpx.Response:
    return await client.put(
        f"/access/v1/members/{user_id}/role",
        json={"role": role},
        headers=bearer(token or ws.token),
    )


async def member_types(database_url: str, workspace_id: str) -> list[str]:
    return [t for _, t in await stored_events(database_url, workspace_id)]


async def event_data(database_url: str, workspace_id: str, event_type: str) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT envelope FROM access.events WHERE workspace_id = %s AND type = %s"
            " ORDER BY position",
            (workspace_id, event_type),
        )
        return [row[0]["data"] for row in await cursor.fetchall()]


# roles


async def test_admins_change_roles_between_member_and_admin(
    client: httpx.AsyncClient, stack: Stack, database_url: str
) -> None:
    """An admin promotes a member to admin and back; each change is a member.added event
    carrying the new role, the token's role follows at once, and an unchanged role adds nothing."""
    ws = await new_workspace(client, stack)
    admin = await add_member(client, ws, role="admin")
    admin_token = (await issue_token(client, ws, admin["id"]))["token"]
    member = await add_member(client, ws)
    member_token = (await issue_token(client, ws, member["id"]))["token"]

    promoted = await set_role(client, ws, member["id"], "admin", admin_token)
    as_admin = await client.get("/access/v1/members", headers=bearer(member_token))
    same = await set_role(client, ws, member["id"], "admin", admin_token)
    demoted = await set_role(client, ws, member["id"], "member", admin_token)
    as_member = await client.get("/access/v1/members", headers=bearer(member_token))

    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["role"] == "admin"
    assert as_admin.status_code == 200
    assert same.status_code == 200
    assert demoted.json()["role"] == "member"
    assert as_member.status_code == 403
    roles = [d["role"] for d in await event_data(database_url, ws.id, "byom.member.added.v1")]
    assert roles == ["owner", "admin", "member", "admin", "member"]


async def test_owners_alone_make_and_unmake_owners(client: httpx.AsyncClient, stack: Stack) -> None:
    """Only an owner promotes to owner or demotes an owner; the last owner stays one;
    a deactivated member's role waits for reactivation."""
    ws = await new_workspace(client, stack)
    admin = await add_member(client, ws, role="admin")
    admin_token = (await issue_token(client, ws, admin["id"]))["token"]
    member = await add_member(client, ws)

    by_admin = await set_role(client, ws, member["id"], "owner", admin_token)
    last_owner = await set_role(client, ws, ws.owner_id, "admin")
    by_owner = await set_role(client, ws, member["id"], "owner")
    owner_by_admin = await set_role(client, ws, member["id"], "member", admin_token)
    second_owner_demoted = await set_role(client, ws, ws.owner_id, "admin")
    await client.post(f"/access/v1/members/{admin['id']}/deactivate", headers=bearer(ws.token))
    inactive = await set_role(client, ws, admin["id"], "member", ws.token)
    unknown = await set_role(client, ws, str(uuid.uuid4()), "admin")

    assert by_admin.status_code == 403
    assert last_owner.status_code == 409
    assert last_owner.json()["error"]["code"] == "last_owner"
    assert by_owner.status_code == 200
    assert owner_by_admin.status_code == 403
    assert second_owner_demoted.status_code == 200
    assert second_owner_demoted.json()["role"] == "admin"
    assert inactive.status_code == 409
    assert inactive.json()["error"]["code"] == "member_inactive"
    assert unknown.status_code == 404


# reactivation


async def test_reactivated_member_gets_tokens_groups_and_role_back(
    client: httpx.AsyncClient, stack: Stack, database_url: str
) -> None:
    """Deactivation suspends; reactivation makes the same tokens work again and appends
    member.added with the role the member had."""
    ws = await new_workspace(client, stack)
    member = await add_member(client, ws, role="admin")
    token = (await issue_token(client, ws, member["id"]))["token"]
    group_id = await create_group(client, ws)
    await client.put(
        f"/access/v1/groups/{group_id}/members/{member['id']}", headers=bearer(ws.token)
    )

    await client.post(f"/access/v1/members/{member['id']}/deactivate", headers=bearer(ws.token))
    suspended = await introspect(client, stack, token)
    reactivated = await client.post(
        f"/access/v1/members/{member['id']}/reactivate", headers=bearer(ws.token)
    )
    again = await client.post(
        f"/access/v1/members/{member['id']}/reactivate", headers=bearer(ws.token)
    )
    restored = await introspect(client, stack, token)
    in_group = await client.get(f"/access/v1/groups/{group_id}/members", headers=bearer(ws.token))

    assert suspended.status_code == 404
    assert reactivated.status_code == 200
    assert reactivated.json() == {**member, "active": True}
    assert again.status_code == 200
    assert restored.status_code == 200
    assert restored.json()["role"] == "admin"
    assert [m["id"] for m in in_group.json()["data"]] == [member["id"]]
    types = await member_types(database_url, ws.id)
    assert types[-2:] == ["byom.member.deactivated.v1", "byom.member.added.v1"]


async def test_only_an_owner_reactivates_an_owner(client: httpx.AsyncClient, stack: Stack) -> None:
    """Reactivating an owner restores owner powers, so an admin may not do it."""
    ws = await new_workspace(client, stack)
    second = await add_member(client, ws, role="owner")
    admin = await add_member(client, ws, role="admin")
    admin_token = (await issue_token(client, ws, admin["id"]))["token"]
    await client.post(f"/access/v1/members/{second['id']}/deactivate", headers=bearer(ws.token))

    by_admin = await client.post(
        f"/access/v1/members/{second['id']}/reactivate", headers=bearer(admin_token)
    )
    by_owner = await client.post(
        f"/access/v1/members/{second['id']}/reactivate", headers=bearer(ws.token)
    )

    assert by_admin.status_code == 403
    assert by_owner.status_code == 200


# removal


async def test_removal_revokes_tokens_leaves_groups_and_drops_personal_rules(
    client: httpx.AsyncClient, stack: Stack, js: JetStreamContext, database_url: str
) -> None:
    """Removing a member records deactivation, then one event per token revoked, group
    left and personal rule revoked; the workspace rule stays and the member is gone from
    every read."""
    ws = await new_workspace(client, stack)
    member = await add_member(client, ws)
    live = await issue_token(client, ws, member["id"])
    revoked = await issue_token(client, ws, member["id"])
    await client.delete(f"/access/v1/tokens/{revoked['id']}", headers=bearer(ws.token))
    groups = [await create_group(client, ws), await create_group(client, ws)]
    for group_id in groups:
        await client.put(
            f"/access/v1/groups/{group_id}/members/{member['id']}", headers=bearer(ws.token)
        )
    model_id = await discover_model(js, stack, ws.id)
    everyone = await grant_once_known(client, ws, model_id, {"principal_kind": "workspace"})
    personal = await client.post(
        f"/access/v1/models/{model_id}/rules",
        json={"principal_kind": "user", "principal_id": member["id"]},
        headers=bearer(ws.token),
    )
    assert personal.status_code == 201
    before = len(await member_types(database_url, ws.id))

    removed = await client.delete(f"/access/v1/members/{member['id']}", headers=bearer(ws.token))

    assert removed.status_code == 204
    types = (await member_types(database_url, ws.id))[before:]
    assert types == [
        "byom.member.deactivated.v1",
        "byom.token.revoked.v1",
        "byom.group.member_removed.v1",
        "byom.group.member_removed.v1",
        "byom.access.revoked.v1",
    ]
    assert (await introspect(client, stack, live["token"])).status_code == 404
    as_admin = bearer(ws.token)
    reads = await asyncio.gather(
        client.get(f"/access/v1/members/{member['id']}", headers=as_admin),
        client.get(f"/access/v1/members/{member['id']}/tokens", headers=as_admin),
        client.post(f"/access/v1/members/{member['id']}/reactivate", headers=as_admin),
        client.delete(f"/access/v1/members/{member['id']}", headers=as_admin),
        client.post(
            f"/access/v1/models/{model_id}/rules",
            json={"principal_kind": "user", "principal_id": member["id"]},
            headers=as_admin,
        ),
    )
    assert [r.status_code for r in reads] == [404] * len(reads)
    listed = await client.get("/access/v1/members", headers=as_admin)
    assert member["id"] not in {m["id"] for m in listed.json()["data"]}
    for group_id in groups:
        in_group = await client.get(f"/access/v1/groups/{group_id}/members", headers=as_admin)
        assert in_group.json()["data"] == []
    rules = await client.get(f"/access/v1/models/{model_id}/rules", headers=as_admin)
    assert [r["id"] for r in rules.json()["data"]] == [everyone.json()["id"]]


async def test_a_removed_email_can_join_again_as_a_new_member(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """Removal releases the email: the same address is added again with a fresh id, and
    the old tokens stay dead."""
    ws = await new_workspace(client, stack)
    email = f"Returning-{suffix()}@example.com"
    first = await person(client, ws, "Returning", email)
    old_token = (await issue_token(client, ws, first["id"]))["token"]
    await client.delete(f"/access/v1/members/{first['id']}", headers=bearer(ws.token))

    second = await person(client, ws, "Returning", email.lower())

    assert second["id"] != first["id"]
    assert (await introspect(client, stack, old_token)).status_code == 404


async def test_removing_a_deactivated_member_is_still_recorded(
    client: httpx.AsyncClient, stack: Stack, database_url: str
) -> None:
    """A member already suspended, with nothing left to revoke, still leaves a
    member.deactivated event when removed, so the removal is in the log."""
    ws = await new_workspace(client, stack)
    member = await add_member(client, ws)
    await client.post(f"/access/v1/members/{member['id']}/deactivate", headers=bearer(ws.token))
    before = len(await member_types(database_url, ws.id))

    removed = await client.delete(f"/access/v1/members/{member['id']}", headers=bearer(ws.token))

    assert removed.status_code == 204
    assert (await member_types(database_url, ws.id))[before:] == ["byom.member.deactivated.v1"]


async def test_owners_are_removed_only_by_owners_and_never_the_last(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """An admin cannot remove an owner (403); the only active owner cannot be removed (409)."""
    ws = await new_workspace(client, stack)
    admin = await add_member(client, ws, role="admin")
    admin_token = (await issue_token(client, ws, admin["id"]))["token"]

    last = await client.delete(f"/access/v1/members/{ws.owner_id}", headers=bearer(ws.token))
    by_admin = await client.delete(f"/access/v1/members/{ws.owner_id}", headers=bearer(admin_token))
    member = await add_member(client, ws)
    by_member_token = (await issue_token(client, ws, member["id"]))["token"]
    by_member = await client.delete(
        f"/access/v1/members/{admin['id']}", headers=bearer(by_member_token)
    )

    assert last.status_code == 409
    assert last.json()["error"]["code"] == "last_owner"
    assert by_admin.status_code == 403
    assert by_member.status_code == 403


# the directory


async def search(
    client: httpx.AsyncClient, ws: Workspace, q: str, **params: Any
) -> list[dict[str, Any]]:
    response = await client.get(
        "/access/v1/directory", params={"q": q, **params}, headers=bearer(ws.token)
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]
    return found


async def test_directory_finds_people_and_groups_by_prefix_and_substring_ignoring_case(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """One query answers people by name or email and groups by name, any case, with
    prefix matches before substring matches."""
    ws = await new_workspace(client, stack)
    run = suffix()
    mara = await person(client, ws, f"Mara Keller {run}", f"mk-{run}@example.com")
    omar = await person(client, ws, f"Omar Reyes {run}", f"omar-{run}@example.com")
    legal = await group_named(client, ws, f"Marketing {run}")
    await person(client, ws, f"Zed {run}", f"zed-{run}@example.com")

    by_prefix = await search(client, ws, "MAR")
    by_email = await search(client, ws, f"OMAR-{run}@EXAMPLE")
    by_substring = await search(client, ws, "keller")

    assert [(e["kind"], e["id"]) for e in by_prefix if run in e["name"]] == [
        ("user", mara["id"]),
        ("group", legal),
        ("user", omar["id"]),
    ]
    assert by_prefix[0] == {
        "kind": "user",
        "id": mara["id"],
        "name": mara["display_name"],
        "email": mara["email"],
        "active": True,
    }
    group_entry = next(e for e in by_prefix if e["kind"] == "group")
    assert group_entry == {
        "kind": "group",
        "id": legal,
        "name": f"Marketing {run}",
        "email": None,
        "active": True,
    }
    assert [e["id"] for e in by_email] == [omar["id"]]
    assert [e["id"] for e in by_substring] == [mara["id"]]


async def test_directory_treats_like_wildcards_as_plain_characters(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """% and _ (and the escape character itself) in a query match only themselves."""
    ws = await new_workspace(client, stack)
    run = suffix()
    percent = await person(client, ws, f"100% Sure {run}", f"p-{run}@example.com")
    underscore = await person(client, ws, f"snake_case {run}", f"s-{run}@example.com")
    slash = await person(client, ws, f"either/or {run}", f"o-{run}@example.com")
    await person(client, ws, f"100 Plain {run}", f"x-{run}@example.com")
    await person(client, ws, f"snakeXcase {run}", f"y-{run}@example.com")

    assert [e["id"] for e in await search(client, ws, "%")] == [percent["id"]]
    assert [e["id"] for e in await search(client, ws, "0% s")] == [percent["id"]]
    assert [e["id"] for e in await search(client, ws, "e_c")] == [underscore["id"]]
    assert [e["id"] for e in await search(client, ws, "r/o")] == [slash["id"]]
    assert await search(client, ws, "%%%") == []


async def test_directory_is_bounded_scoped_and_skips_removed_members(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """The answer holds at most ``limit`` entries (50 at most), only the caller's
    workspace, deactivated people marked inactive and removed people not at all."""
    ws, other = await new_workspace(client, stack), await new_workspace(client, stack)
    run = suffix()
    people = [await person(client, ws, f"Ann {run} {i}", f"a{i}-{run}@x.com") for i in range(4)]
    await person(client, other, f"Ann {run} elsewhere", f"a-{run}@x.com")
    await group_named(client, other, f"Ann {run} team")
    await client.post(f"/access/v1/members/{people[1]['id']}/deactivate", headers=bearer(ws.token))
    await client.delete(f"/access/v1/members/{people[2]['id']}", headers=bearer(ws.token))

    found = await search(client, ws, run)
    limited = await search(client, ws, run, limit=2)
    too_many = await client.get(
        "/access/v1/directory", params={"q": run, "limit": 51}, headers=bearer(ws.token)
    )
    blank = await client.get("/access/v1/directory", params={"q": "  "}, headers=bearer(ws.token))
    missing = await client.get("/access/v1/directory", headers=bearer(ws.token))

    assert [(e["id"], e["active"]) for e in found] == [
        (people[0]["id"], True),
        (people[1]["id"], False),
        (people[3]["id"], True),
    ]
    assert [e["id"] for e in limited] == [people[0]["id"], people[1]["id"]]
    assert (too_many.status_code, blank.status_code, missing.status_code) == (422, 422, 422)


# who may use what


async def test_who_may_use_a_model_and_what_a_member_may_use_name_the_rules(
    client: httpx.AsyncClient, stack: Stack, js: JetStreamContext
) -> None:
    """Each person the rules reach is listed with every rule that reaches them, and each
    model a person may use with its rules; deactivated people are left out of the first."""
    ws = await new_workspace(client, stack)
    ann, bob, cy = [await add_member(client, ws) for _ in range(3)]
    group_id = await create_group(client, ws)
    await client.put(f"/access/v1/groups/{group_id}/members/{ann['id']}", headers=bearer(ws.token))
    first, second = await discover_model(js, stack, ws.id), await discover_model(js, stack, ws.id)
    to_group = (
        await grant_once_known(
            client, ws, first, {"principal_kind": "group", "principal_id": group_id}
        )
    ).json()
    to_ann = (
        await grant_once_known(
            client, ws, first, {"principal_kind": "user", "principal_id": ann["id"]}
        )
    ).json()
    to_bob = (
        await grant_once_known(
            client, ws, first, {"principal_kind": "user", "principal_id": bob["id"]}
        )
    ).json()
    to_all = (await grant_once_known(client, ws, second, {"principal_kind": "workspace"})).json()
    await client.post(f"/access/v1/members/{bob['id']}/deactivate", headers=bearer(ws.token))

    who = await client.get(f"/access/v1/models/{first}/members", headers=bearer(ws.token))
    ann_models = await client.get(
        f"/access/v1/members/{ann['id']}/models", headers=bearer(ws.token)
    )
    cy_models = await client.get(f"/access/v1/members/{cy['id']}/models", headers=bearer(ws.token))

    assert who.status_code == 200, who.text
    assert who.json()["model"] == {
        "id": first,
        "name": who.json()["model"]["name"],
        "enabled": False,
        "retired": False,
    }
    assert [(g["member"]["id"], [r["id"] for r in g["rules"]]) for g in who.json()["data"]] == [
        (ann["id"], [to_group["id"], to_ann["id"]])
    ]
    assert ann_models.json()["member"]["id"] == ann["id"]
    assert {m["model"]["id"]: [r["id"] for r in m["rules"]] for m in ann_models.json()["data"]} == {
        first: [to_group["id"], to_ann["id"]],
        second: [to_all["id"]],
    }
    assert [(m["model"]["id"], m["rules"]) for m in cy_models.json()["data"]] == [
        (second, [to_all])
    ]
    assert to_bob["id"] not in who.text
