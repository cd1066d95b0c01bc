"""Model names at the proxy, through the official SDKs: exact names, aliases, and the
refusals of retired and unpriced models, on the OpenAI and Anthropic doors alike.

The catalog runs with an operator data file that prices some of the emulator's models,
leaves one unpriced, and names a successor for one that is then retired upstream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anthropic
import httpx
import openai
import pytest

from tests.conftest import Infra
from tests.e2e.flows import connect_provider, discovered_models, grant_when_known, provider_key
from tests.e2e.providers import create_workspace
from tests.emulator import EmulatorState, running_emulator
from tests.stack import Stack, running_stack
from tests.support import Workspace, eventually, gateway_client

pytestmark = pytest.mark.e2e

MODELS: Final = ["gpt-alpha", "gpt-beta", "gpt-free", "gpt-old", "gpt-new"]
MESSAGES: Final[list[Any]] = [{"role": "user", "content": "hi"}]
DATA: Final = {
    "models": [
        {"provider": "openai-compatible", "match": "gpt-alpha", "price": {"input": 1, "output": 2}},
        {"provider": "openai-compatible", "match": "gpt-beta", "price": {"input": 1, "output": 2}},
        {"provider": "openai-compatible", "match": "gpt-new", "price": {"input": 1, "output": 2}},
        {
            "provider": "openai-compatible",
            "match": "gpt-old",
            "price": {"input": 1, "output": 2},
            "successor": "gpt-new",
        },
    ]
}


@pytest.fixture(scope="module")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_file = tmp_path_factory.mktemp("model-data") / "models.json"
    data_file.write_text(json.dumps(DATA))
    with running_stack(
        database_url=infra.database_url,
        nats_url=infra.nats_url,
        stream=infra.stream,
        subject_prefix=infra.prefix,
        log_dir=Path(tmp_path_factory.mktemp("model-names-logs")),
        extra_env={"catalog": {"BYOM_MODEL_DATA_FILE": str(data_file)}},
    ) as running:
        yield running


@dataclass
class Setup:
    """A workspace whose every model is enabled; the member holds gpt-alpha only."""

    admin: Workspace
    state: EmulatorState
    connection: dict[str, Any]
    models: dict[str, dict[str, Any]]  # upstream id -> catalog entry
    member_id: str
    token: str

    def name(self, upstream_id: str) -> str:
        return str(self.models[upstream_id]["name"])


@pytest.fixture
async def setup(stack: Stack) -> AsyncIterator[Setup]:
    state = EmulatorState(models=list(MODELS))
    async with (
        running_emulator(state) as base_url,
        gateway_client({n: stack.url(n) for n in stack.services}) as client,
    ):
        admin = await create_workspace(stack, client)
        connection = await connect_provider(admin, (state, base_url), provider_key())
        listed = await discovered_models(admin, connection["id"], count=len(MODELS))
        models = {m["upstream_id"]: m for m in listed}
        await admin.ok(
            "POST", "/catalog/v1/models/enable", json={"model_ids": [m["id"] for m in listed]}
        )
        member = await admin.member("member")
        for upstream_id in ("gpt-alpha", "gpt-free", "gpt-old"):
            await grant_when_known(
                admin,
                models[upstream_id]["id"],
                {"principal_kind": "user", "principal_id": member["id"]},
            )
        token = await admin.token_for(member["id"])
        setup = Setup(admin, state, connection, models, member["id"], token)
        await eventually(lambda: _callable(stack, token, setup.name("gpt-old")), within=10)
        yield setup


async def _callable(stack: Stack, token: str, name: str) -> bool:
    async with httpx.AsyncClient(base_url=stack.openai_base_url) as client:
        response = await client.get("/models", headers={"Authorization": f"Bearer {token}"})
    return response.status_code == 200 and name in [m["id"] for m in response.json()["data"]]


@pytest.fixture
async def clients(stack: Stack, setup: Setup) -> AsyncIterator[tuple[Any, Any]]:
    oa = openai.AsyncOpenAI(base_url=stack.openai_base_url, api_key=setup.token, max_retries=0)
    an = anthropic.AsyncAnthropic(
        base_url=stack.openai_base_url.removesuffix("/v1"), api_key=setup.token, max_retries=0
    )
    yield oa, an
    await oa.close()
    await an.close()


def _tricks(name: str) -> list[str]:
    """Spellings of ``name`` that must reach nothing: the proxy matches exactly."""
    connection, upstream = name.split("/", 1)
    return [
        name.upper(),
        connection + "/" + upstream.upper(),
        name.capitalize(),
        name + "/",
        name + " ",
        " " + name,
        name[:-1],
        connection + "/",
        connection,
        upstream,
        connection + "/*",
        connection + "/gpt-*",
        "*",
        connection + "/gpt-alph?",
        f"{connection}/../{name}",
        f"./{name}",
        f"{connection}//{upstream}",
        f"{connection}%2F{upstream}",
        f"{connection}%2f{upstream}",
        name.replace("a", "\u0430"),  # Cyrillic a
        name.replace("-", "\u2010"),  # Unicode hyphen
        name.replace("-", "\uff0d"),  # full-width hyphen-minus
        name + "\u200b",  # zero-width space
        name + "\x00",
    ]


async def test_no_spelling_but_the_exact_name_reaches_a_model_on_either_door(
    setup: Setup, clients: tuple[openai.AsyncOpenAI, anthropic.AsyncAnthropic]
) -> None:
    """Case, padding, prefixes, patterns, dot segments, encodings and look-alikes all get a 404
    model_not_found in the caller's dialect, for a granted model and an ungranted one alike."""
    oa, an = clients
    granted, other = setup.name("gpt-alpha"), setup.name("gpt-beta")
    answer = await oa.chat.completions.create(model=granted, messages=MESSAGES)
    assert answer.choices[0].message.content

    for name in (granted, other):
        for spelling in _tricks(name):
            with pytest.raises(openai.NotFoundError) as on_openai:
                await oa.chat.completions.create(model=spelling, messages=MESSAGES)
            assert on_openai.value.code == "model_not_found", spelling
            with pytest.raises(anthropic.NotFoundError) as on_anthropic:
                await an.messages.create(model=spelling, max_tokens=16, messages=MESSAGES)
            body = on_anthropic.value.body
            assert isinstance(body, dict) and body["error"]["type"] == "not_found_error", spelling

    with pytest.raises(openai.PermissionDeniedError):
        await oa.chat.completions.create(model=other, messages=MESSAGES)
    assert all(r.json.get("model") == "gpt-alpha" for r in _chats(setup.state))


def _chats(state: EmulatorState) -> list[Any]:
    return state.requests_to("/chat/completions")


async def test_the_models_route_matches_exactly_too(
    stack: Stack, setup: Setup, clients: tuple[openai.AsyncOpenAI, anthropic.AsyncAnthropic]
) -> None:
    """GET /v1/models/{id}: the SDK's retrieve and raw paths with encoded tricks alike."""
    oa, _ = clients
    granted, other = setup.name("gpt-alpha"), setup.name("gpt-beta")
    assert (await oa.models.retrieve(granted)).id == granted
    with pytest.raises(openai.PermissionDeniedError):
        await oa.models.retrieve(other)

    connection, upstream = granted.split("/", 1)
    raw_paths = [
        f"{connection}/{upstream.upper()}",
        f"{connection.upper()}/{upstream}",
        f"{granted}/",
        f"{connection}/gpt-%2A",
        f"{connection}%252F{upstream}",  # double-encoded slash
        f"{connection}/%2e%2e/{granted}",  # encoded dot segment, left as is by the client
        f"{connection}/gpt-alph%3F",
        f"{connection}/gpt-%D0%B0lpha",  # Cyrillic a, encoded
        f"{connection}/{upstream}%20",
        f"{connection}/{upstream}%00",
        "%2A",
    ]
    headers = {"Authorization": f"Bearer {setup.token}"}
    async with httpx.AsyncClient(base_url=stack.url("proxy")) as client:
        for path in raw_paths:
            response = await client.get(f"/v1/models/{path}", headers=headers)
            assert response.status_code == 404, (path, response.text)
            assert response.json()["error"]["code"] == "model_not_found", path


async def test_an_alias_reaches_its_model_under_the_models_rules_and_follows_a_repoint(
    stack: Stack, setup: Setup, clients: tuple[openai.AsyncOpenAI, anthropic.AsyncAnthropic]
) -> None:
    """A member without a grant on the target is refused although the alias exists; re-pointing
    reaches the proxy within a second; the models list shows only usable aliases."""
    oa, an = clients
    admin = setup.admin
    pointed = await admin.ok(
        "PUT", "/catalog/v1/aliases/cheap", json={"model_id": setup.models["gpt-beta"]["id"]}
    )
    assert pointed["model_name"] == setup.name("gpt-beta") and pointed["target_status"] == "ok"

    async def refused_not_granted() -> bool:
        try:
            await oa.chat.completions.create(model="cheap", messages=MESSAGES)
        except openai.PermissionDeniedError as error:
            return error.code == "model_not_permitted"
        except openai.NotFoundError:
            return False
        return False

    await eventually(refused_not_granted, within=5)
    with pytest.raises(anthropic.PermissionDeniedError):
        await an.messages.create(model="cheap", max_tokens=16, messages=MESSAGES)
    assert "cheap" not in [m.id async for m in oa.models.list()]

    await admin.ok(
        "PUT", "/catalog/v1/aliases/cheap", json={"model_id": setup.models["gpt-alpha"]["id"]}
    )

    async def served() -> bool:
        try:
            await oa.chat.completions.create(model="cheap", messages=MESSAGES)
        except openai.APIStatusError:
            return False
        return True

    await eventually(served, within=1.0, interval=0.02)
    answer = await an.messages.create(model="cheap", max_tokens=16, messages=MESSAGES)
    assert answer.content[0].type == "text"
    assert _chats(setup.state)[-1].json["model"] == "gpt-alpha"
    assert "cheap" in [m.id async for m in oa.models.list()]
    assert (await oa.models.retrieve("cheap")).id == "cheap"
    for spelling in ("CHEAP", "cheap ", "chea", "cheap/", "ch*"):
        with pytest.raises(openai.NotFoundError):
            await oa.chat.completions.create(model=spelling, messages=MESSAGES)

    await admin.ok("DELETE", "/catalog/v1/aliases/cheap")

    async def gone() -> bool:
        try:
            await oa.chat.completions.create(model="cheap", messages=MESSAGES)
        except openai.NotFoundError:
            return True
        return False

    await eventually(gone, within=5)


async def test_aliases_are_validated_and_kept_to_the_workspace(stack: Stack, setup: Setup) -> None:
    admin = setup.admin
    model_id = setup.models["gpt-alpha"]["id"]
    for bad in ("Cheap", "a/b", "-x", "x" * 65, "ch eap"):
        response = await admin.call(
            "PUT", f"/catalog/v1/aliases/{bad}", json={"model_id": model_id}
        )
        assert response.status_code in (404, 422), (bad, response.text)
    assert (await admin.call("GET", "/catalog/v1/aliases/nothing")).status_code == 404

    async with gateway_client({n: stack.url(n) for n in stack.services}) as client:
        other = await create_workspace(stack, client)
        foreign = await other.call("PUT", "/catalog/v1/aliases/mine", json={"model_id": model_id})
        assert foreign.status_code == 404
        member = await admin.member("plain")
        token = await admin.token_for(member["id"])
        as_member = await client.put(
            "/catalog/v1/aliases/mine",
            json={"model_id": model_id},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert as_member.status_code == 403


async def test_a_retired_model_is_refused_naming_its_successor_and_its_alias_is_flagged(
    setup: Setup, clients: tuple[openai.AsyncOpenAI, anthropic.AsyncAnthropic]
) -> None:
    oa, an = clients
    admin = setup.admin
    old, new = setup.name("gpt-old"), setup.name("gpt-new")
    await admin.ok(
        "PUT", "/catalog/v1/aliases/default-chat", json={"model_id": setup.models["gpt-old"]["id"]}
    )
    setup.state.models.remove("gpt-old")
    synced = await admin.ok("POST", f"/catalog/v1/connections/{setup.connection['id']}/sync")
    assert synced["retired"] == 1

    async def retired_on_openai() -> openai.NotFoundError | None:
        try:
            await oa.chat.completions.create(model=old, messages=MESSAGES)
        except openai.NotFoundError as error:
            return error if error.code == "model_retired" else None
        return None

    error = await eventually(retired_on_openai, within=5)
    assert "retired" in error.message and f"'{new}'" in error.message
    with pytest.raises(anthropic.NotFoundError) as on_anthropic:
        await an.messages.create(model=old, max_tokens=16, messages=MESSAGES)
    body = on_anthropic.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "not_found_error"
    assert "retired" in body["error"]["message"] and f"'{new}'" in body["error"]["message"]

    with pytest.raises(openai.NotFoundError) as by_alias:
        await oa.chat.completions.create(model="default-chat", messages=MESSAGES)
    assert by_alias.value.code == "model_retired"
    assert f"'{old}'" in by_alias.value.message and f"'{new}'" in by_alias.value.message

    flagged = await admin.ok("GET", "/catalog/v1/aliases", params={"flagged": "true"})
    assert [(a["name"], a["target_status"], a["target_successor"]) for a in flagged["data"]] == [
        ("default-chat", "retired", new)
    ]
    refused = await admin.call(
        "PUT", "/catalog/v1/aliases/other", json={"model_id": setup.models["gpt-old"]["id"]}
    )
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "model_retired"


async def test_an_unpriced_model_is_refused_where_the_workspace_forbids_them(
    setup: Setup, clients: tuple[openai.AsyncOpenAI, anthropic.AsyncAnthropic]
) -> None:
    oa, an = clients
    unpriced, priced = setup.name("gpt-free"), setup.name("gpt-alpha")
    entry = await setup.admin.ok("GET", f"/catalog/v1/models/{setup.models['gpt-free']['id']}")
    assert entry["price_unknown"] is True
    await oa.chat.completions.create(model=unpriced, messages=MESSAGES)

    settings = await setup.admin.ok(
        "PATCH", "/access/v1/workspace/settings", json={"allow_unpriced_models": False}
    )
    assert settings["allow_unpriced_models"] is False

    async def refused() -> openai.PermissionDeniedError | None:
        try:
            await oa.chat.completions.create(model=unpriced, messages=MESSAGES)
        except openai.PermissionDeniedError as error:
            return error
        return None

    error = await eventually(refused, within=5)
    assert error.code == "model_price_unknown" and unpriced in error.message
    with pytest.raises(anthropic.PermissionDeniedError) as on_anthropic:
        await an.messages.create(model=unpriced, max_tokens=16, messages=MESSAGES)
    body = on_anthropic.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "permission_error"
    assert "no known price" in body["error"]["message"]
    await an.messages.create(model=priced, max_tokens=16, messages=MESSAGES)
