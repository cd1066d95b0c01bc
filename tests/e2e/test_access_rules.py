"""Access rules add up, and removing one takes away only what it gave, at the proxy and
in the admin's answers to "who may use this model" and "which models may this person use".
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.access_flows import chat_status, settles_to
from tests.e2e.flows import (
    connect_provider,
    discovered_models,
    grant_when_known,
    provider_key,
    visible_models,
)
from tests.emulator import EmulatorState
from tests.stack import Stack
from tests.support import Workspace, unique

pytestmark = pytest.mark.e2e


def granting(answer: dict[str, Any]) -> dict[str, list[str]]:
    """member id -> ids of the rules that grant them the model, from "who may use M"."""
    return {g["member"]["id"]: [r["id"] for r in g["rules"]] for g in answer["data"]}


def models_granted(answer: dict[str, Any]) -> dict[str, list[str]]:
    """model id -> ids of the rules that grant it, from "which models may P use"."""
    return {m["model"]["id"]: [r["id"] for r in m["rules"]] for m in answer["data"]}


async def test_everyone_plus_marketing_plus_one_person_then_everyone_removed(
    stack: Stack, workspace: Workspace, emulator: tuple[EmulatorState, str]
) -> None:
    """A model open to all members, the Marketing group and one named person; once the
    workspace rule is removed only Marketing and that person can still call it."""
    ws = workspace
    connection = await connect_provider(ws, emulator, provider_key())
    models = await discovered_models(ws, connection["id"], count=len(emulator[0].models))
    model = next(m for m in models if m["upstream_id"] == "gpt-alpha")
    await ws.ok("POST", f"/catalog/v1/models/{model['id']}/enable")
    marketer = await ws.member("marketer")
    named = await ws.member("named")
    other = await ws.member("other")
    marketing = await ws.ok("POST", "/access/v1/groups", json={"name": unique("Marketing")})
    await ws.ok("PUT", f"/access/v1/groups/{marketing['id']}/members/{marketer['id']}")
    tokens = {p["id"]: await ws.token_for(p["id"]) for p in (marketer, named, other)}

    everyone = await grant_when_known(ws, model["id"], {"principal_kind": "workspace"})
    to_marketing = await grant_when_known(
        ws, model["id"], {"principal_kind": "group", "principal_id": marketing["id"]}
    )
    to_named = await grant_when_known(
        ws, model["id"], {"principal_kind": "user", "principal_id": named["id"]}
    )
    for token in tokens.values():
        await settles_to(stack, token, model["name"], 200)

    who = await ws.ok("GET", f"/access/v1/models/{model['id']}/members")
    assert who["model"] == {
        "id": model["id"],
        "name": model["name"],
        "enabled": True,
        "retired": False,
    }
    assert granting(who) == {
        ws.owner_id: [everyone["id"]],
        marketer["id"]: [everyone["id"], to_marketing["id"]],
        named["id"]: [everyone["id"], to_named["id"]],
        other["id"]: [everyone["id"]],
    }

    await ws.ok("DELETE", f"/access/v1/models/{model['id']}/rules/{everyone['id']}")

    await settles_to(stack, tokens[other["id"]], model["name"], 403)
    assert await chat_status(stack, tokens[marketer["id"]], model["name"]) == 200
    assert await chat_status(stack, tokens[named["id"]], model["name"]) == 200
    assert await visible_models(stack, tokens[other["id"]]) == []
    assert await visible_models(stack, tokens[marketer["id"]]) == [model["name"]]

    who = await ws.ok("GET", f"/access/v1/models/{model['id']}/members")
    assert granting(who) == {
        marketer["id"]: [to_marketing["id"]],
        named["id"]: [to_named["id"]],
    }
    for person, expected in (
        (marketer, {model["id"]: [to_marketing["id"]]}),
        (named, {model["id"]: [to_named["id"]]}),
        (other, {}),
    ):
        answer = await ws.ok("GET", f"/access/v1/members/{person['id']}/models")
        assert answer["member"]["id"] == person["id"]
        assert models_granted(answer) == expected
