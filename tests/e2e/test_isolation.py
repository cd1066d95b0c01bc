"""Nothing of one workspace is visible or usable from another.

Two workspaces are built alike, down to the same connection, group and member names,
and workspace A then tries everything it can reach through the APIs against B's ids:
people, groups, tokens, rules, models, connections, and calls at the proxy. Every
attempt must answer 404 (as for an id that never existed), change nothing in B, and
carry nothing of B in its answer. Identifiers are random UUID4s, not a sequence.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.e2e.access_flows import chat_status
from tests.e2e.flows import (
    discovered_models,
    grant_when_known,
    provider_key,
    visible_models,
)
from tests.emulator import EmulatorState
from tests.stack import Stack
from tests.support import Workspace, eventually, new_workspace, unique

pytestmark = pytest.mark.e2e


@dataclass
class Side:
    """One workspace's things, built the same way in both."""

    ws: Workspace
    key: str
    connection: dict[str, Any]
    models: dict[str, dict[str, Any]]
    member: dict[str, Any]
    member_token: dict[str, Any]
    group: dict[str, Any]
    rules: list[dict[str, Any]]

    @property
    def model(self) -> dict[str, Any]:
        return self.models["gpt-alpha"]

    def ids(self) -> list[str]:
        return [
            self.ws.id,
            self.ws.owner_id,
            self.connection["id"],
            *(m["id"] for m in self.models.values()),
            self.member["id"],
            self.member_token["id"],
            self.group["id"],
            *(r["id"] for r in self.rules),
        ]


async def build(
    ws: Workspace,
    emulator: tuple[EmulatorState, str],
    *,
    connection_name: str,
    email: str,
    group_name: str,
) -> Side:
    """A connection, an enabled model, a member in a group, a token, and three rules."""
    state, base_url = emulator
    key = provider_key()
    state.keys.add(key)
    connection = await ws.ok(
        "POST",
        "/keyvault/v1/connections",
        json={
            "provider": "openai-compatible",
            "name": connection_name,
            "base_url": base_url,
            "api_key": key,
        },
    )
    models = await discovered_models(ws, connection["id"], count=len(state.models))
    by_upstream = {m["upstream_id"]: m for m in models}
    model = by_upstream["gpt-alpha"]
    await ws.ok("POST", f"/catalog/v1/models/{model['id']}/enable")
    member = await ws.ok(
        "POST", "/access/v1/members", json={"email": email, "display_name": "Same Name"}
    )
    group = await ws.ok("POST", "/access/v1/groups", json={"name": group_name})
    await ws.ok("PUT", f"/access/v1/groups/{group['id']}/members/{member['id']}")
    token = await ws.ok(
        "POST", f"/access/v1/members/{member['id']}/tokens", json={"name": "laptop"}
    )
    rules = [
        await grant_when_known(ws, model["id"], {"principal_kind": "workspace"}),
        await grant_when_known(
            ws, model["id"], {"principal_kind": "group", "principal_id": group["id"]}
        ),
        await grant_when_known(
            ws, model["id"], {"principal_kind": "user", "principal_id": member["id"]}
        ),
    ]
    return Side(ws, key, connection, by_upstream, member, token, group, rules)


@pytest.fixture
async def sides(
    stack: Stack,
    workspace: Workspace,
    gateway: httpx.AsyncClient,
    emulator: tuple[EmulatorState, str],
) -> tuple[Side, Side]:
    """Workspaces A and B, with the same connection, group and member names; B first, so
    A's choices of those names would collide if uniqueness leaked across workspaces."""
    names = {
        "connection_name": unique("shared"),
        "email": f"{unique('same')}@example.test",
        "group_name": unique("Marketing"),
    }
    b = await build(await new_workspace(gateway, stack.operator_token, "other"), emulator, **names)
    a = await build(workspace, emulator, **names)
    return a, b


def of_b(b: Side) -> list[str]:
    """What must never appear in an answer to A: B's ids, key, tokens and workspace."""
    return [*b.ids(), b.key, b.member_token["token"], b.ws.admin_token]


async def test_ids_are_random_uuid4s(sides: tuple[Side, Side]) -> None:
    """Every id the APIs hand out is a canonical UUID4, and ids made one after the other
    share no telling prefix, as a counter or a time-ordered id would."""
    a, b = sides
    made = b.ids() + a.ids()

    for value in made:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and str(parsed) == value, value
    assert len(set(made)) == len(made)
    # Character by character on purpose: a counter or a clock would share leading digits.
    prefixes = [os.path.commonprefix([x, y]) for x, y in itertools.pairwise(made)]  # noqa: RUF071
    assert max(len(p) for p in prefixes) < 8, prefixes


async def test_admin_apis_answer_404_for_every_id_of_another_workspace(
    stack: Stack, sides: tuple[Side, Side]
) -> None:
    """A's admin, and A's member where members may act, get 404 for each of B's ids on
    every route that takes one, with nothing of B in the answer."""
    a, b = sides
    member_id, group_id, model_id = b.member["id"], b.group["id"], b.model["id"]
    rule_id, token_id, connection_id = b.rules[0]["id"], b.member_token["id"], b.connection["id"]
    as_member = {"Authorization": f"Bearer {a.member_token['token']}"}
    attempts: list[tuple[str, str, dict[str, Any]]] = [
        # people
        ("GET", f"/access/v1/members/{member_id}", {}),
        ("DELETE", f"/access/v1/members/{member_id}", {}),
        ("POST", f"/access/v1/members/{member_id}/deactivate", {}),
        ("POST", f"/access/v1/members/{member_id}/reactivate", {}),
        ("PUT", f"/access/v1/members/{member_id}/role", {"json": {"role": "admin"}}),
        ("GET", f"/access/v1/members/{member_id}/models", {}),
        ("GET", f"/access/v1/members/{member_id}/tokens", {}),
        ("POST", f"/access/v1/members/{member_id}/tokens", {"json": {"name": "x"}}),
        ("DELETE", f"/access/v1/members/{b.ws.owner_id}", {}),
        # tokens
        ("DELETE", f"/access/v1/tokens/{token_id}", {}),
        ("DELETE", f"/access/v1/tokens/{token_id}", {"headers": as_member}),
        # groups
        ("GET", f"/access/v1/groups/{group_id}/members", {}),
        ("PUT", f"/access/v1/groups/{group_id}/members/{a.member['id']}", {}),
        ("DELETE", f"/access/v1/groups/{group_id}/members/{member_id}", {}),
        ("PUT", f"/access/v1/groups/{a.group['id']}/members/{member_id}", {}),
        # rules on B's model, and B's rules through A's model
        ("GET", f"/access/v1/models/{model_id}/rules", {}),
        ("GET", f"/access/v1/models/{model_id}/members", {}),
        ("POST", f"/access/v1/models/{model_id}/rules", {"json": {"principal_kind": "workspace"}}),
        ("DELETE", f"/access/v1/models/{model_id}/rules/{rule_id}", {}),
        ("DELETE", f"/access/v1/models/{a.model['id']}/rules/{rule_id}", {}),
        # grants from A naming B's workspace, group or member
        *(
            (
                "POST",
                f"/access/v1/models/{a.models['gpt-beta']['id']}/rules",
                {"json": {"principal_kind": kind, "principal_id": principal}},
            )
            for kind, principal in (
                ("workspace", b.ws.id),
                ("group", group_id),
                ("user", member_id),
                ("user", b.ws.owner_id),
            )
        ),
        # connections
        ("GET", f"/keyvault/v1/connections/{connection_id}", {}),
        ("PUT", f"/keyvault/v1/connections/{connection_id}/key", {"json": {"api_key": a.key}}),
        ("DELETE", f"/keyvault/v1/connections/{connection_id}", {}),
        ("GET", f"/catalog/v1/connections/{connection_id}", {}),
        ("POST", f"/catalog/v1/connections/{connection_id}/sync", {}),
        # catalog models
        ("GET", f"/catalog/v1/models/{model_id}", {}),
        ("POST", f"/catalog/v1/models/{model_id}/enable", {}),
        ("POST", f"/catalog/v1/models/{b.models['gpt-beta']['id']}/enable", {}),
        ("POST", f"/catalog/v1/models/{model_id}/disable", {}),
    ]

    # The same attempts with every id of B swapped for one that never existed: an id of
    # another workspace must be answered exactly as a made-up one.
    ghosts = {real: str(uuid.uuid4()) for real in b.ids()}
    wrong = []
    for method, path, kwargs in attempts:
        response = await a.ws.call(method, path, **kwargs)
        ghost_path, ghost_kwargs = swap([path, kwargs], ghosts)
        ghost = await a.ws.call(method, ghost_path, **ghost_kwargs)
        unseen = [s for s in of_b(b) if s in response.text and s not in repr((path, kwargs))]
        same = response.status_code == ghost.status_code and response.json() == swap(
            ghost.json(), {v: k for k, v in ghosts.items()}
        )
        if response.status_code != 404 or unseen or not same:
            wrong.append(f"{method} {path}: {response.status_code} {response.text[:200]}")

    assert not wrong, "\n".join(wrong)


def swap(value: Any, replacements: dict[str, str]) -> Any:
    """``value`` (anything JSON can hold) with each key of ``replacements`` replaced."""
    text = json.dumps(value)
    for old, new in replacements.items():
        text = text.replace(old, new)
    return json.loads(text)


async def test_lists_and_searches_show_nothing_of_another_workspace(
    sides: tuple[Side, Side],
) -> None:
    """A's lists, filters and directory searches hold A's things only, even where B's
    carry the very same names."""
    a, b = sides
    reads = [
        ("/access/v1/members", {}),
        ("/access/v1/groups", {}),
        ("/access/v1/tokens", {}),
        ("/access/v1/directory", {"q": "same"}),
        ("/access/v1/directory", {"q": b.group["name"]}),
        ("/access/v1/directory", {"q": b.member["email"]}),
        ("/keyvault/v1/connections", {}),
        ("/catalog/v1/connections", {}),
        ("/catalog/v1/models", {}),
        ("/catalog/v1/models", {"connection_id": b.connection["id"]}),
        (f"/access/v1/models/{a.model['id']}/members", {}),
        (f"/access/v1/members/{a.member['id']}/models", {}),
    ]

    for path, params in reads:
        response = await a.ws.call("GET", path, params=params)
        assert response.status_code == 200, (path, response.text)
        assert not [s for s in of_b(b) if s in response.text], path

    filtered = await a.ws.ok(
        "GET", "/catalog/v1/models", params={"connection_id": b.connection["id"]}
    )
    assert filtered["data"] == []
    found = await a.ws.ok("GET", "/access/v1/directory", params={"q": b.group["name"]})
    assert [e["id"] for e in found["data"]] == [a.group["id"]]


async def test_proxy_serves_a_token_only_its_own_workspace(
    stack: Stack, sides: tuple[Side, Side], emulator: tuple[EmulatorState, str]
) -> None:
    """A's member reaches A's model under a name B also uses, with A's key; a model only
    B enabled and granted is not there for A; B's member is unaffected by all of it."""
    a, b = sides
    state, _ = emulator
    await ready_for(stack, a, b)
    await b.ws.ok("POST", f"/catalog/v1/models/{b.models['gpt-beta']['id']}/enable")
    await grant_when_known(b.ws, b.models["gpt-beta"]["id"], {"principal_kind": "workspace"})
    beta = b.models["gpt-beta"]["name"]
    await eventually(lambda: _lists(stack, b.member_token["token"], beta), within=10)

    state.requests.clear()
    own = await chat_status(stack, a.member_token["token"], a.model["name"])
    sent_with = state.requests_to("/chat/completions")[-1].bearer
    only_b = await chat_status(stack, a.member_token["token"], beta)
    by_api_key = await chat_status(stack, a.member_token["token"], beta, "x-api-key")
    as_b = await chat_status(stack, b.member_token["token"], beta)

    assert a.model["name"] == b.model["name"]
    assert own == 200 and sent_with == a.key
    assert (only_b, by_api_key) == (404, 404)
    assert as_b == 200
    assert await visible_models(stack, a.member_token["token"]) == [a.model["name"]]


async def test_attempts_from_another_workspace_change_nothing(
    stack: Stack, sides: tuple[Side, Side]
) -> None:
    """After A's admin tried to revoke, disable, disconnect and remove B's things, B's
    member still calls B's model, and B's rules, group and connection are as they were."""
    a, b = sides
    await ready_for(stack, a, b)
    for method, path in (
        ("DELETE", f"/access/v1/tokens/{b.member_token['id']}"),
        ("DELETE", f"/access/v1/members/{b.member['id']}"),
        ("DELETE", f"/access/v1/models/{b.model['id']}/rules/{b.rules[0]['id']}"),
        ("DELETE", f"/access/v1/groups/{b.group['id']}/members/{b.member['id']}"),
        ("POST", f"/catalog/v1/models/{b.model['id']}/disable"),
        ("DELETE", f"/keyvault/v1/connections/{b.connection['id']}"),
    ):
        assert (await a.ws.call(method, path)).status_code == 404

    assert await chat_status(stack, b.member_token["token"], b.model["name"]) == 200
    rules = await b.ws.ok("GET", f"/access/v1/models/{b.model['id']}/rules")
    assert [r["id"] for r in rules["data"]] == [r["id"] for r in b.rules]
    in_group = await b.ws.ok("GET", f"/access/v1/groups/{b.group['id']}/members")
    assert [m["id"] for m in in_group["data"]] == [b.member["id"]]
    connection = await b.ws.ok("GET", f"/keyvault/v1/connections/{b.connection['id']}")
    assert connection["status"] == "active"
    assert (await b.ws.ok("GET", f"/catalog/v1/models/{b.model['id']}"))["enabled"] is True


async def ready_for(stack: Stack, *sides: Side) -> None:
    """Wait until the proxy lets each side's member call that side's model."""
    for side in sides:
        token, name = side.member_token["token"], side.model["name"]
        await eventually(lambda t=token, n=name: _lists(stack, t, n), within=10)


async def _lists(stack: Stack, token: str, name: str) -> bool:
    return name in await visible_models(stack, token)
