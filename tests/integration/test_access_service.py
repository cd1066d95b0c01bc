"""The access service, running as its own process on real PostgreSQL and NATS JetStream.

Each test makes workspaces of its own with random names and drives the service over
HTTP. Models become known to access the way they do in production: a catalog
ModelDiscovered event on the stream, which access's durable consumer picks up.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import psycopg
import pytest
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from shared.events.envelope import Envelope
from shared.events.schemas import ModelDiscovered, ModelRetired
from shared.principal import token_hash
from shared.service_auth import ServiceSigner
from tests.conftest import Infra
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.integration

DEADLINE_SECONDS = 15.0


@pytest.fixture
def database_url(infra: Infra) -> str:
    """This module's database, where the services keep their schemas and events."""
    return infra.database_url


@pytest.fixture(scope="module")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        services=("access",),
        database_url=infra.database_url,
        nats_url=infra.nats_url,
        stream=infra.stream,
        subject_prefix=infra.prefix,
        log_dir=Path(tmp_path_factory.mktemp("access-logs")),
    ) as running:
        yield running


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url("access"), timeout=10.0) as http:
        yield http


@pytest.fixture(scope="module")
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()


# helpers


@dataclass(frozen=True)
class Workspace:
    id: str
    owner_id: str
    token: str


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def suffix() -> str:
    return secrets.token_hex(4)


async def new_workspace(client: httpx.AsyncClient, stack: Stack) -> Workspace:
    run = suffix()
    body = {"name": f"ws-{run}", "owner_email": f"owner-{run}@example.com", "owner_name": "Owner"}
    response = await client.post(
        "/access/v1/workspaces", json=body, headers=bearer(stack.operator_token)
    )
    assert response.status_code == 201, response.text
    created = response.json()
    return Workspace(created["workspace"]["id"], created["owner"]["id"], created["token"]["token"])


async def add_member(
    client: httpx.AsyncClient, ws: Workspace, role: str = "member"
) -> dict[str, Any]:
    body = {"email": f"m-{suffix()}@example.com", "display_name": "Member", "role": role}
    response = await client.post("/access/v1/members", json=body, headers=bearer(ws.token))
    assert response.status_code == 201, response.text
    member: dict[str, Any] = response.json()
    return member


async def issue_token_response(
    client: httpx.AsyncClient, ws: Workspace, user_id: str, **extra: Any
) -> httpx.Response:
    return await client.post(
        f"/access/v1/members/{user_id}/tokens",
        json={"name": f"t-{suffix()}", **extra},
        headers=bearer(ws.token),
    )


async def issue_token(
    client: httpx.AsyncClient, ws: Workspace, user_id: str, **extra: Any
) -> dict[str, Any]:
    response = await issue_token_response(client, ws, user_id, **extra)
    assert response.status_code == 201, response.text
    token: dict[str, Any] = response.json()
    return token


async def create_group(client: httpx.AsyncClient, ws: Workspace) -> str:
    response = await client.post(
        "/access/v1/groups", json={"name": f"g-{suffix()}"}, headers=bearer(ws.token)
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def introspect(
    client: httpx.AsyncClient, stack: Stack, token: str, *, credential: str | None = None
) -> httpx.Response:
    if credential is None:
        signer = ServiceSigner(stack.env["BYOM_SERVICE_SECRET"].encode())
        credential = signer.mint("proxy", "access")
    return await client.post(
        "/access/internal/v1/introspect",
        json={"token_hash": token_hash(token)},
        headers=bearer(credential),
    )


async def publish_catalog_event(
    js: JetStreamContext, stack: Stack, workspace_id: str, data: ModelDiscovered | ModelRetired
) -> None:
    """Append a catalog model event to the stream exactly as catalog's relay would."""
    stream_id = f"model-{data.model_id}"
    envelope = Envelope(
        source="/byom/catalog",
        type=data.event_type(),
        subject=stream_id,
        data=data.model_dump(mode="json"),
        workspaceid=workspace_id,
        streamid=stream_id,
        streamversion=2 if isinstance(data, ModelRetired) else 1,
    )
    await js.publish(
        data.subject(stack.env["BYOM_SUBJECT_PREFIX"]),
        envelope.to_json(),
        stream=stack.env["BYOM_NATS_STREAM"],
        headers={"Nats-Msg-Id": envelope.id},
    )


async def discover_model(js: JetStreamContext, stack: Stack, workspace_id: str) -> str:
    model_id = str(uuid.uuid4())
    upstream = f"model-{suffix()}"
    discovered = ModelDiscovered(
        model_id=model_id,
        connection_id=str(uuid.uuid4()),
        model_name=f"conn/{upstream}",
        upstream_id=upstream,
        provider="openai-compatible",
    )
    await publish_catalog_event(js, stack, workspace_id, discovered)
    return model_id


async def grant_once_known(
    client: httpx.AsyncClient, ws: Workspace, model_id: str, body: dict[str, Any]
) -> httpx.Response:
    """Grant, retrying while access has not yet consumed the model's discovery."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        response = await client.post(
            f"/access/v1/models/{model_id}/rules", json=body, headers=bearer(ws.token)
        )
        unknown = response.status_code == 404 and response.json()["error"]["code"] == (
            "model_not_found"
        )
        if not unknown or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.1)


async def stored_events(database_url: str, workspace_id: str) -> list[tuple[str, str]]:
    """(id, type) of every event access stored for the workspace, in append order."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT id, type FROM access.events WHERE workspace_id = %s ORDER BY position",
            (workspace_id,),
        )
        return [(row[0], row[1]) for row in await cursor.fetchall()]


async def published_ids(js: JetStreamContext, stack: Stack) -> set[str]:
    """Ids of every event on the stream under access's subjects."""
    subject = f"{stack.env['BYOM_SUBJECT_PREFIX']}.access.>"
    info = await js.stream_info(stack.env["BYOM_NATS_STREAM"])
    sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    ids: set[str] = set()
    try:
        while True:
            msg = await sub.next_msg(timeout=1.0)
            ids.add(msg.headers["Nats-Msg-Id"] if msg.headers else "")
            if msg.metadata.sequence.stream >= info.state.last_seq:
                break
    except nats.errors.TimeoutError:
        pass
    await sub.unsubscribe()
    return ids


# workspaces and the caller


async def test_operator_creates_workspace_with_owner_and_first_token(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """The operator's call returns the workspace, its owner and a working owner token, once."""
    run = suffix()
    body = {"name": f"acme-{run}", "owner_email": f"Ada-{run}@Example.com", "owner_name": "Ada"}
    response = await client.post(
        "/access/v1/workspaces", json=body, headers=bearer(stack.operator_token)
    )

    assert response.status_code == 201
    created = response.json()
    assert created["workspace"]["name"] == f"acme-{run}"
    assert created["owner"] == {
        "id": created["owner"]["id"],
        "email": f"Ada-{run}@Example.com",
        "display_name": "Ada",
        "role": "owner",
    }
    token = created["token"]
    assert token["token"].startswith("byom_")
    assert token["prefix"] == token["token"][:12]

    me = await client.get("/access/v1/me", headers=bearer(token["token"]))
    assert me.status_code == 200
    assert me.json() == {
        "workspace_id": created["workspace"]["id"],
        "user_id": created["owner"]["id"],
        "role": "owner",
        "token_id": token["id"],
        "email": f"Ada-{run}@Example.com",
        "display_name": "Ada",
    }


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-operator-token", "Basic abc"])
async def test_workspace_creation_needs_the_operator_token(
    client: httpx.AsyncClient, stack: Stack, authorization: str | None
) -> None:
    """Without the operator token, or with a wrong one, no workspace is created: 401."""
    headers = {"Authorization": authorization} if authorization else {}
    body = {"name": "x", "owner_email": "x@example.com", "owner_name": "X"}

    response = await client.post("/access/v1/workspaces", json=body, headers=headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


async def test_workspace_owner_token_cannot_create_workspaces(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """A workspace owner's gateway token is not the operator token."""
    ws = await new_workspace(client, stack)
    body = {"name": "x", "owner_email": "x@example.com", "owner_name": "X"}

    response = await client.post("/access/v1/workspaces", json=body, headers=bearer(ws.token))

    assert response.status_code == 401


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer byom_not-a-real-token"}])
async def test_me_needs_a_valid_token(
    client: httpx.AsyncClient, stack: Stack, headers: dict[str, str]
) -> None:
    """/me answers 401 without a token or with an unknown one."""
    response = await client.get("/access/v1/me", headers=headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


# members


async def test_members_are_created_listed_and_unique_by_email(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """An admin adds members; the same email in any case is a 409; the list shows all."""
    ws = await new_workspace(client, stack)
    email = f"Grace-{suffix()}@Example.com"

    created = await client.post(
        "/access/v1/members",
        json={"email": email, "display_name": "Grace", "role": "admin"},
        headers=bearer(ws.token),
    )
    duplicate = await client.post(
        "/access/v1/members",
        json={"email": email.upper(), "display_name": "Grace again"},
        headers=bearer(ws.token),
    )
    listed = await client.get("/access/v1/members", headers=bearer(ws.token))

    assert created.status_code == 201
    member = created.json()
    assert member == {
        "id": member["id"],
        "email": email,
        "display_name": "Grace",
        "role": "admin",
        "active": True,
    }
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "email_taken"
    assert [m["id"] for m in listed.json()["data"]] == [ws.owner_id, member["id"]]


async def test_member_input_is_validated(client: httpx.AsyncClient, stack: Stack) -> None:
    """A malformed email, an unknown role or an unknown field is refused with 422."""
    ws = await new_workspace(client, stack)
    bodies = [
        {"email": "not-an-email", "display_name": "X"},
        {"email": f"x-{suffix()}@example.com", "display_name": "X", "role": "superuser"},
        {"email": f"x-{suffix()}@example.com", "display_name": "X", "rol": "admin"},
    ]

    for body in bodies:
        response = await client.post("/access/v1/members", json=body, headers=bearer(ws.token))
        assert response.status_code == 422, body


async def test_members_cannot_use_admin_routes(client: httpx.AsyncClient, stack: Stack) -> None:
    """A plain member is refused the admin routes with 403, and admins cannot make owners."""
    ws = await new_workspace(client, stack)
    member = await add_member(client, ws)
    member_token = (await issue_token(client, ws, member["id"]))["token"]
    admin = await add_member(client, ws, role="admin")
    admin_token = (await issue_token(client, ws, admin["id"]))["token"]

    as_member = await client.get("/access/v1/members", headers=bearer(member_token))
    owner_by_admin = await client.post(
        "/access/v1/members",
        json={"email": f"o-{suffix()}@example.com", "display_name": "O", "role": "owner"},
        headers=bearer(admin_token),
    )

    assert as_member.status_code == 403
    assert owner_by_admin.status_code == 403


async def test_deactivated_member_tokens_stop_working(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """Deactivating a member makes every token of theirs fail introspection and /me."""
    ws = await new_workspace(client, stack)
    member = await add_member(client, ws)
    first = (await issue_token(client, ws, member["id"]))["token"]
    second = (await issue_token(client, ws, member["id"]))["token"]
    assert (await introspect(client, stack, first)).status_code == 200

    response = await client.post(
        f"/access/v1/members/{member['id']}/deactivate", headers=bearer(ws.token)
    )

    assert response.status_code == 200
    assert response.json()["active"] is False
    assert (await introspect(client, stack, first)).status_code == 404
    assert (await introspect(client, stack, second)).status_code == 404
    assert (await client.get("/access/v1/me", headers=bearer(first))).status_code == 401
    again = await issue_token_response(client, ws, member["id"])
    assert again.status_code == 409


async def test_last_owner_cannot_be_deactivated(client: httpx.AsyncClient, stack: Stack) -> None:
    """A workspace always keeps an active owner: deactivating the only one is a 409."""
    ws = await new_workspace(client, stack)

    response = await client.post(
        f"/access/v1/members/{ws.owner_id}/deactivate", headers=bearer(ws.token)
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "last_owner"


# groups


async def test_group_membership_is_added_listed_and_removed(
    client: httpx.AsyncClient, stack: Stack, database_url: str
) -> None:
    """Adding to a group is idempotent (one event), removal takes the member out again."""
    ws = await new_workspace(client, stack)
    member = await add_member(client, ws)
    group_id = await create_group(client, ws)
    path = f"/access/v1/groups/{group_id}/members/{member['id']}"

    first = await client.put(path, headers=bearer(ws.token))
    second = await client.put(path, headers=bearer(ws.token))
    listed = await client.get(f"/access/v1/groups/{group_id}/members", headers=bearer(ws.token))
    removed = await client.delete(path, headers=bearer(ws.token))
    after = await client.get(f"/access/v1/groups/{group_id}/members", headers=bearer(ws.token))
    groups = await client.get("/access/v1/groups", headers=bearer(ws.token))

    assert (first.status_code, second.status_code, removed.status_code) == (204, 204, 204)
    assert [m["id"] for m in listed.json()["data"]] == [member["id"]]
    assert after.json()["data"] == []
    assert [g["id"] for g in groups.json()["data"]] == [group_id]
    types = [t for _, t in await stored_events(database_url, ws.id)]
    assert types.count("byom.group.member_added.v1") == 1
    assert types.count("byom.group.member_removed.v1") == 1


async def test_group_names_are_unique_per_workspace(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """A second group with the same name (any case) in one workspace is a 409."""
    ws = await new_workspace(client, stack)
    name = f"Team-{suffix()}"

    first = await client.post("/access/v1/groups", json={"name": name}, headers=bearer(ws.token))
    second = await client.post(
        "/access/v1/groups", json={"name": name.lower()}, headers=bearer(ws.token)
    )

    assert first.status_code == 201
    assert first.json() == {"id": first.json()["id"], "name": name}
    assert second.status_code == 409


# tokens


async def test_token_secret_is_shown_once_and_never_stored(
    client: httpx.AsyncClient, stack: Stack, database_url: str
) -> None:
    """A new token is returned once; listings, the database and the logs never hold it."""
    ws = await new_workspace(client, stack)

    response = await client.post(
        "/access/v1/tokens", json={"name": "laptop"}, headers=bearer(ws.token)
    )
    listed = await client.get("/access/v1/tokens", headers=bearer(ws.token))

    assert response.status_code == 201
    issued = response.json()
    assert set(issued) == {"id", "name", "prefix", "token", "expires_at"}
    secret = issued["token"]
    assert listed.status_code == 200
    assert {t["name"] for t in listed.json()["data"]} == {"initial", "laptop"}
    assert secret not in listed.text
    assert all("token" not in t for t in listed.json()["data"])
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        by_hash = await conn.execute(
            "SELECT count(*) FROM access.tokens WHERE token_hash = %s", (token_hash(secret),)
        )
        assert await by_hash.fetchone() == (1,)
        in_clear = await conn.execute(
            "SELECT (SELECT count(*) FROM access.tokens t WHERE strpos(t::text, %s) > 0)"
            " + (SELECT count(*) FROM access.events e WHERE strpos(e::text, %s) > 0)",
            (secret, secret),
        )
        assert await in_clear.fetchone() == (0,)
    assert secret not in stack.logs()
    assert ws.token not in stack.logs()


async def test_revoked_token_fails_introspection(client: httpx.AsyncClient, stack: Stack) -> None:
    """After DELETE /tokens/{id} the token no longer introspects nor opens /me."""
    ws = await new_workspace(client, stack)
    member = await add_member(client, ws)
    issued = await issue_token(client, ws, member["id"])
    assert (await introspect(client, stack, issued["token"])).status_code == 200

    response = await client.delete(f"/access/v1/tokens/{issued['id']}", headers=bearer(ws.token))
    repeated = await client.delete(f"/access/v1/tokens/{issued['id']}", headers=bearer(ws.token))

    assert (response.status_code, repeated.status_code) == (204, 204)
    assert (await introspect(client, stack, issued["token"])).status_code == 404
    assert (await client.get("/access/v1/me", headers=bearer(issued["token"]))).status_code == 401


async def test_member_revokes_own_token_but_not_anothers(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """A member may revoke their own token; someone else's is invisible to them (404)."""
    ws = await new_workspace(client, stack)
    alice, bob = await add_member(client, ws), await add_member(client, ws)
    alice_token = await issue_token(client, ws, alice["id"])
    bob_token = await issue_token(client, ws, bob["id"])

    others = await client.delete(
        f"/access/v1/tokens/{bob_token['id']}", headers=bearer(alice_token["token"])
    )
    own = await client.delete(
        f"/access/v1/tokens/{alice_token['id']}", headers=bearer(alice_token["token"])
    )

    assert others.status_code == 404
    assert own.status_code == 204
    assert (await introspect(client, stack, bob_token["token"])).status_code == 200


async def test_expired_token_fails_introspection(client: httpx.AsyncClient, stack: Stack) -> None:
    """A token stops introspecting once its expires_at has passed; a past expiry is refused."""
    ws = await new_workspace(client, stack)
    expires_at = datetime.now(UTC) + timedelta(seconds=2)
    issued = await issue_token(client, ws, ws.owner_id, expires_at=expires_at.isoformat())
    past = await client.post(
        "/access/v1/tokens",
        json={"name": "old", "expires_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},
        headers=bearer(ws.token),
    )
    assert past.status_code == 422
    assert (await introspect(client, stack, issued["token"])).status_code == 200

    deadline = time.monotonic() + DEADLINE_SECONDS
    while (await introspect(client, stack, issued["token"])).status_code == 200:
        assert time.monotonic() < deadline, "the token outlived its expiry"
        await asyncio.sleep(0.2)

    assert datetime.now(UTC) >= expires_at


# introspection


async def test_introspection_answers_services_only(client: httpx.AsyncClient, stack: Stack) -> None:
    """The internal route wants a service credential for "access": 401 without, 403 for a
    gateway token, 401 for a forged or misdirected one, 200 with the owner's principal."""
    ws = await new_workspace(client, stack)
    signer = ServiceSigner(stack.env["BYOM_SERVICE_SECRET"].encode())
    forger = ServiceSigner(secrets.token_bytes(32))
    body = {"token_hash": token_hash(ws.token)}
    url = "/access/internal/v1/introspect"

    missing = await client.post(url, json=body)
    gateway = await client.post(url, json=body, headers=bearer(ws.token))
    forged = await introspect(client, stack, ws.token, credential=forger.mint("proxy", "access"))
    elsewhere = await introspect(
        client, stack, ws.token, credential=signer.mint("proxy", "keyvault")
    )
    valid = await introspect(client, stack, ws.token)
    unknown = await introspect(client, stack, "byom_" + secrets.token_urlsafe(32))

    assert missing.status_code == 401
    assert gateway.status_code == 403
    assert forged.status_code == 401
    assert elsewhere.status_code == 401
    assert valid.status_code == 200
    assert valid.json() == {
        "workspace_id": ws.id,
        "user_id": ws.owner_id,
        "role": "owner",
        "token_id": valid.json()["token_id"],
    }
    assert unknown.status_code == 404


# access rules


async def test_rules_grant_to_workspace_group_and_user(
    client: httpx.AsyncClient, stack: Stack, js: JetStreamContext
) -> None:
    """A known model is granted to the workspace, a group and a user; the same grant twice
    is a 409; revoking one rule leaves the others."""
    ws = await new_workspace(client, stack)
    member = await add_member(client, ws)
    group_id = await create_group(client, ws)
    model_id = await discover_model(js, stack, ws.id)

    to_workspace = await grant_once_known(client, ws, model_id, {"principal_kind": "workspace"})
    rules_url = f"/access/v1/models/{model_id}/rules"
    to_group = await client.post(
        rules_url,
        json={"principal_kind": "group", "principal_id": group_id},
        headers=bearer(ws.token),
    )
    to_user = await client.post(
        rules_url,
        json={"principal_kind": "user", "principal_id": member["id"]},
        headers=bearer(ws.token),
    )
    duplicate = await client.post(
        rules_url,
        json={"principal_kind": "workspace", "principal_id": ws.id},
        headers=bearer(ws.token),
    )

    assert to_workspace.status_code == 201, to_workspace.text
    assert to_workspace.json() == {
        "id": to_workspace.json()["id"],
        "model_id": model_id,
        "principal_kind": "workspace",
        "principal_id": ws.id,
        "permission": "can_view",
    }
    assert (to_group.status_code, to_user.status_code) == (201, 201)
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "rule_exists"

    revoked = await client.delete(f"{rules_url}/{to_group.json()['id']}", headers=bearer(ws.token))
    listed = await client.get(rules_url, headers=bearer(ws.token))
    assert revoked.status_code == 204
    assert {r["id"] for r in listed.json()["data"]} == {
        to_workspace.json()["id"],
        to_user.json()["id"],
    }


async def test_rules_need_a_known_model_and_a_principal_of_the_workspace(
    client: httpx.AsyncClient, stack: Stack, js: JetStreamContext
) -> None:
    """Granting an unknown model, or to an unknown group or user, is a 404; a group or user
    rule without principal_id is a 422."""
    ws = await new_workspace(client, stack)
    model_id = await discover_model(js, stack, ws.id)
    assert (
        await grant_once_known(client, ws, model_id, {"principal_kind": "workspace"})
    ).status_code == 201

    unknown_model = await client.post(
        f"/access/v1/models/{uuid.uuid4()}/rules",
        json={"principal_kind": "workspace"},
        headers=bearer(ws.token),
    )
    rules_url = f"/access/v1/models/{model_id}/rules"
    unknown_group = await client.post(
        rules_url,
        json={"principal_kind": "group", "principal_id": str(uuid.uuid4())},
        headers=bearer(ws.token),
    )
    unknown_user = await client.post(
        rules_url,
        json={"principal_kind": "user", "principal_id": str(uuid.uuid4())},
        headers=bearer(ws.token),
    )
    missing_id = await client.post(
        rules_url, json={"principal_kind": "user"}, headers=bearer(ws.token)
    )

    assert unknown_model.status_code == 404
    assert unknown_model.json()["error"]["code"] == "model_not_found"
    assert unknown_group.status_code == 404
    assert unknown_user.status_code == 404
    assert missing_id.status_code == 422


async def test_retired_model_cannot_be_granted(
    client: httpx.AsyncClient, stack: Stack, js: JetStreamContext
) -> None:
    """Once catalog retires a model, a new grant of it is a 409 model_retired."""
    ws = await new_workspace(client, stack)
    model_id = await discover_model(js, stack, ws.id)
    member = await add_member(client, ws)
    body = {"principal_kind": "workspace"}
    assert (await grant_once_known(client, ws, model_id, body)).status_code == 201

    retired = ModelRetired(model_id=model_id, connection_id=str(uuid.uuid4()))
    await publish_catalog_event(js, stack, ws.id, retired)

    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        response = await client.post(
            f"/access/v1/models/{model_id}/rules",
            json={"principal_kind": "user", "principal_id": member["id"]},
            headers=bearer(ws.token),
        )
        if response.status_code != 201 or time.monotonic() > deadline:
            break
        # The grant beat the retirement to the consumer; take it back and try again.
        await client.delete(
            f"/access/v1/models/{model_id}/rules/{response.json()['id']}",
            headers=bearer(ws.token),
        )
        await asyncio.sleep(0.1)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "model_retired"


async def test_ids_of_another_workspace_are_not_found(
    client: httpx.AsyncClient, stack: Stack, js: JetStreamContext
) -> None:
    """Every id of workspace A, used by an admin of workspace B, answers 404 and changes nothing."""
    a, b = await new_workspace(client, stack), await new_workspace(client, stack)
    a_member = await add_member(client, a)
    a_token = await issue_token(client, a, a_member["id"])
    a_group = await create_group(client, a)
    a_model = await discover_model(js, stack, a.id)
    a_rule = await grant_once_known(client, a, a_model, {"principal_kind": "workspace"})
    assert a_rule.status_code == 201
    b_member = await add_member(client, b)
    b_group = await create_group(client, b)
    b_model = await discover_model(js, stack, b.id)
    assert (
        await grant_once_known(client, b, b_model, {"principal_kind": "workspace"})
    ).status_code == 201
    as_b = bearer(b.token)
    b_rules = f"/access/v1/models/{b_model}/rules"

    attempts = [
        client.get(f"/access/v1/members/{a_member['id']}", headers=as_b),
        client.post(f"/access/v1/members/{a_member['id']}/deactivate", headers=as_b),
        client.post(
            f"/access/v1/members/{a_member['id']}/tokens", json={"name": "x"}, headers=as_b
        ),
        client.get(f"/access/v1/members/{a_member['id']}/tokens", headers=as_b),
        client.delete(f"/access/v1/tokens/{a_token['id']}", headers=as_b),
        client.get(f"/access/v1/groups/{a_group}/members", headers=as_b),
        client.put(f"/access/v1/groups/{a_group}/members/{b_member['id']}", headers=as_b),
        client.put(f"/access/v1/groups/{b_group}/members/{a_member['id']}", headers=as_b),
        client.post(
            f"/access/v1/models/{a_model}/rules", json={"principal_kind": "workspace"}, headers=as_b
        ),
        client.get(f"/access/v1/models/{a_model}/rules", headers=as_b),
        client.delete(f"/access/v1/models/{a_model}/rules/{a_rule.json()['id']}", headers=as_b),
        client.delete(f"{b_rules}/{a_rule.json()['id']}", headers=as_b),
        client.post(
            b_rules, json={"principal_kind": "workspace", "principal_id": a.id}, headers=as_b
        ),
        client.post(
            b_rules, json={"principal_kind": "group", "principal_id": a_group}, headers=as_b
        ),
        client.post(
            b_rules, json={"principal_kind": "user", "principal_id": a_member["id"]}, headers=as_b
        ),
    ]
    for response in await asyncio.gather(*attempts):
        assert response.status_code == 404, (response.request.method, response.request.url)

    assert (await introspect(client, stack, a_token["token"])).status_code == 200
    a_rules = await client.get(f"/access/v1/models/{a_model}/rules", headers=bearer(a.token))
    assert [r["id"] for r in a_rules.json()["data"]] == [a_rule.json()["id"]]
    a_members = await client.get("/access/v1/members", headers=bearer(a.token))
    assert all(m["active"] for m in a_members.json()["data"])


# the event log


async def test_every_change_is_an_event_stored_and_published(
    client: httpx.AsyncClient, stack: Stack, js: JetStreamContext, database_url: str
) -> None:
    """Each command leaves its events in access.events, and the relay puts every one on
    the stream under access's subjects."""
    ws = await new_workspace(client, stack)
    member = await add_member(client, ws)
    issued = await issue_token(client, ws, member["id"])
    group_id = await create_group(client, ws)
    path = f"/access/v1/groups/{group_id}/members/{member['id']}"
    assert (await client.put(path, headers=bearer(ws.token))).status_code == 204
    assert (await client.delete(path, headers=bearer(ws.token))).status_code == 204
    model_id = await discover_model(js, stack, ws.id)
    rule = await grant_once_known(client, ws, model_id, {"principal_kind": "workspace"})
    rule_url = f"/access/v1/models/{model_id}/rules/{rule.json()['id']}"
    assert (await client.delete(rule_url, headers=bearer(ws.token))).status_code == 204
    token_url = f"/access/v1/tokens/{issued['id']}"
    assert (await client.delete(token_url, headers=bearer(ws.token))).status_code == 204
    deactivate_url = f"/access/v1/members/{member['id']}/deactivate"
    assert (await client.post(deactivate_url, headers=bearer(ws.token))).status_code == 200

    stored = await stored_events(database_url, ws.id)

    assert [t for _, t in stored] == [
        "byom.workspace.created.v1",
        "byom.user.created.v1",
        "byom.member.added.v1",
        "byom.token.issued.v1",
        "byom.user.created.v1",
        "byom.member.added.v1",
        "byom.token.issued.v1",
        "byom.group.created.v1",
        "byom.group.member_added.v1",
        "byom.group.member_removed.v1",
        "byom.access.granted.v1",
        "byom.access.revoked.v1",
        "byom.token.revoked.v1",
        "byom.member.deactivated.v1",
    ]
    deadline = time.monotonic() + DEADLINE_SECONDS
    missing = {i for i, _ in stored}
    while missing and time.monotonic() < deadline:
        missing -= await published_ids(js, stack)
    assert not missing, f"{len(missing)} events never reached the stream"


async def test_a_model_offered_again_after_retirement_can_be_granted_again(
    client: httpx.AsyncClient, stack: Stack, js: JetStreamContext
) -> None:
    """A retired model that the provider lists again comes back grantable under its old id."""
    ws = await new_workspace(client, stack)
    model_id = await discover_model(js, stack, ws.id)
    member = await add_member(client, ws)
    body = {"principal_kind": "workspace"}
    assert (await grant_once_known(client, ws, model_id, body)).status_code == 201
    connection_id = str(uuid.uuid4())
    await publish_catalog_event(
        js, stack, ws.id, ModelRetired(model_id=model_id, connection_id=connection_id)
    )
    again = ModelDiscovered(
        model_id=model_id,
        connection_id=connection_id,
        model_name="conn/back",
        upstream_id="back",
        provider="openai-compatible",
    )

    deadline = time.monotonic() + DEADLINE_SECONDS
    retired_seen = False
    while time.monotonic() < deadline:
        response = await client.post(
            f"/access/v1/models/{model_id}/rules",
            json={"principal_kind": "user", "principal_id": member["id"]},
            headers=bearer(ws.token),
        )
        if response.status_code == 409 and response.json()["error"]["code"] == "model_retired":
            retired_seen = True
            break
        if response.status_code == 201:
            await client.delete(
                f"/access/v1/models/{model_id}/rules/{response.json()['id']}",
                headers=bearer(ws.token),
            )
        await asyncio.sleep(0.1)
    assert retired_seen

    await publish_catalog_event(js, stack, ws.id, again)
    deadline = time.monotonic() + DEADLINE_SECONDS
    status = None
    while time.monotonic() < deadline:
        response = await client.post(
            f"/access/v1/models/{model_id}/rules",
            json={"principal_kind": "user", "principal_id": member["id"]},
            headers=bearer(ws.token),
        )
        status = response.status_code
        if status == 201:
            break
        await asyncio.sleep(0.1)
    assert status == 201


async def test_an_admin_can_neither_mint_nor_revoke_an_owners_tokens(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """Issuing a token for the owner, or revoking the owner's token, is an owner's act: an admin gets 403."""
    ws = await new_workspace(client, stack)
    admin = await add_member(client, ws, role="admin")
    admin_token = (await issue_token(client, ws, admin["id"]))["token"]
    owner_tokens = (await client.get("/access/v1/tokens", headers=bearer(ws.token))).json()["data"]

    minted = await client.post(
        f"/access/v1/members/{ws.owner_id}/tokens",
        json={"name": "takeover"},
        headers=bearer(admin_token),
    )
    revoked = await client.delete(
        f"/access/v1/tokens/{owner_tokens[0]['id']}", headers=bearer(admin_token)
    )

    assert minted.status_code == 403
    assert revoked.status_code == 403
    assert (await client.get("/access/v1/me", headers=bearer(ws.token))).status_code == 200


async def test_token_expiry_far_in_the_future_is_refused(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """An expiry beyond five years is a 422, so no token can be stored that cannot be read back and revoked."""
    ws = await new_workspace(client, stack)
    member = await add_member(client, ws)

    far = await issue_token_response(
        client, ws, member["id"], expires_at="9999-12-31T23:59:59-14:00"
    )
    near = await issue_token_response(client, ws, member["id"], expires_at="2030-01-01T00:00:00Z")

    assert far.status_code == 422
    assert far.json()["error"]["code"] == "invalid_expiry"
    assert near.status_code == 201
    listed = await client.get(f"/access/v1/members/{member['id']}/tokens", headers=bearer(ws.token))
    assert listed.status_code == 200
