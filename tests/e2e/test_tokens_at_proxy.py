"""Gateway tokens from a member's point of view, through the gateway and the proxy.

A member makes, lists and revokes tokens of their own; an admin revokes anyone's; a
token carries an optional expiry and a name. Whichever header carries a token,
``Authorization: Bearer`` or ``x-api-key``, the proxy runs exactly the same checks.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.access_flows import Header, chat_status
from tests.e2e.flows import ReadyModel, ready_model
from tests.emulator import EmulatorState
from tests.stack import Stack
from tests.support import Workspace, eventually

pytestmark = pytest.mark.e2e

HEADERS: tuple[Header, ...] = ("bearer", "x-api-key")


@pytest.fixture
async def ready(
    stack: Stack, workspace: Workspace, emulator: tuple[EmulatorState, str]
) -> ReadyModel:
    return await ready_model(stack, workspace, emulator)


async def statuses(stack: Stack, token: str, model: str) -> dict[Header, int]:
    """The proxy's answer to the same call, once per header that can carry the token."""
    return {header: await chat_status(stack, token, model, header) for header in HEADERS}


async def settle(stack: Stack, token: str, model: str, status: int) -> dict[Header, int]:
    async def reached() -> dict[Header, int] | None:
        found = await statuses(stack, token, model)
        return found if set(found.values()) == {status} else None

    return await eventually(reached, within=10, interval=0.02)


async def test_member_makes_lists_and_revokes_own_tokens(stack: Stack, ready: ReadyModel) -> None:
    """A member's own token is shown once with a recognisable prefix, listed by name and
    prefix only, works in both headers, and stops at the proxy once they revoke it."""
    ws, model = ready.workspace, ready.model["name"]
    as_member = {"Authorization": f"Bearer {ready.token}"}

    created = await ws.client.post("/access/v1/tokens", json={"name": "laptop"}, headers=as_member)
    listed = await ws.client.get("/access/v1/tokens", headers=as_member)

    assert created.status_code == 201
    issued = created.json()
    secret = issued["token"]
    assert secret.startswith("byom_") and issued["prefix"] == secret[:12]
    assert issued["name"] == "laptop" and issued["expires_at"] is None
    own = {t["id"]: t for t in listed.json()["data"]}
    assert own[issued["id"]]["prefix"] == issued["prefix"]
    assert own[issued["id"]]["user_id"] == ready.member["id"]
    assert secret not in listed.text
    assert await settle(stack, secret, model, 200) == {"bearer": 200, "x-api-key": 200}

    revoked = await ws.client.delete(f"/access/v1/tokens/{issued['id']}", headers=as_member)

    assert revoked.status_code == 204
    assert await settle(stack, secret, model, 401) == {"bearer": 401, "x-api-key": 401}
    assert await statuses(stack, ready.token, model) == {"bearer": 200, "x-api-key": 200}
    after = await ws.client.get("/access/v1/tokens", headers=as_member)
    assert next(t for t in after.json()["data"] if t["id"] == issued["id"])["revoked_at"]


async def test_member_cannot_touch_anothers_token_but_an_admin_can(
    stack: Stack, ready: ReadyModel
) -> None:
    """Someone else's token is invisible to a member (404); an admin revokes it, and the
    proxy refuses it in both headers."""
    ws, model = ready.workspace, ready.model["name"]
    colleague = await ws.member("colleague")
    theirs = await ws.ok(
        "POST", f"/access/v1/members/{colleague['id']}/tokens", json={"name": "ci"}
    )
    await ws.ok(
        "POST",
        f"/access/v1/models/{ready.model['id']}/rules",
        json={"principal_kind": "user", "principal_id": colleague["id"]},
    )
    await settle(stack, theirs["token"], model, 200)

    by_member = await ws.client.delete(
        f"/access/v1/tokens/{theirs['id']}", headers={"Authorization": f"Bearer {ready.token}"}
    )
    assert by_member.status_code == 404
    assert await statuses(stack, theirs["token"], model) == {"bearer": 200, "x-api-key": 200}

    await ws.ok("DELETE", f"/access/v1/tokens/{theirs['id']}")

    assert await settle(stack, theirs["token"], model, 401) == {"bearer": 401, "x-api-key": 401}


async def test_expired_token_is_refused_at_the_proxy_in_both_headers(
    stack: Stack, ready: ReadyModel
) -> None:
    """A token with a short expiry works until then and is refused from then on, by the
    proxy itself (no event announces an expiry), whichever header carries it."""
    ws, model = ready.workspace, ready.model["name"]
    expires_at = datetime.now(UTC) + timedelta(seconds=3)
    issued = await ws.ok(
        "POST",
        f"/access/v1/members/{ready.member['id']}/tokens",
        json={"name": "short-lived", "expires_at": expires_at.isoformat()},
    )
    assert datetime.fromisoformat(issued["expires_at"]) == expires_at

    assert await settle(stack, issued["token"], model, 200) == {"bearer": 200, "x-api-key": 200}
    assert datetime.now(UTC) < expires_at

    refused = await settle(stack, issued["token"], model, 401)

    assert refused == {"bearer": 401, "x-api-key": 401}
    assert datetime.now(UTC) >= expires_at
    assert await statuses(stack, ready.token, model) == {"bearer": 200, "x-api-key": 200}


async def test_both_headers_get_the_same_answer_in_every_token_state(
    stack: Stack, ready: ReadyModel
) -> None:
    """Valid, unknown, malformed, of a deactivated member, not granted: the two headers
    never disagree."""
    ws, model = ready.workspace, ready.model["name"]
    outsider = await ws.member("outsider")
    outsider_token = await ws.token_for(outsider["id"])
    suspended = await ws.member("suspended")
    suspended_token = await ws.token_for(suspended["id"])
    await ws.ok("POST", f"/access/v1/members/{suspended['id']}/deactivate")
    await settle(stack, suspended_token, model, 401)
    await settle(stack, outsider_token, model, 403)

    cases = {
        ready.token: 200,
        outsider_token: 403,
        suspended_token: 401,
        "byom_" + "x" * 43: 401,
        ready.token[:-1]: 401,
        "sk-not-a-gateway-token": 401,
    }
    answers = await asyncio.gather(*(statuses(stack, t, model) for t in cases))

    for (token, expected), answer in zip(cases.items(), answers, strict=True):
        assert answer == {"bearer": expected, "x-api-key": expected}, token[:12]


async def test_a_short_expiry_is_timed_by_the_proxy_not_by_a_later_event(
    stack: Stack, ready: ReadyModel
) -> None:
    """Refusal follows the expiry closely: within a second of it, with no admin action."""
    ws, model = ready.workspace, ready.model["name"]
    expires_at = datetime.now(UTC) + timedelta(seconds=2)
    issued = await ws.ok(
        "POST",
        "/access/v1/tokens",
        json={"name": "brief", "expires_at": expires_at.isoformat()},
        headers={"Authorization": f"Bearer {ready.token}"},
    )
    await settle(stack, issued["token"], model, 200)

    await asyncio.sleep((expires_at - datetime.now(UTC)).total_seconds())
    started = time.monotonic()
    await settle(stack, issued["token"], model, 401)

    assert time.monotonic() - started < 1.0
