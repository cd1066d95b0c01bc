"""OpenAI-style servers through the running gateway: local ones without a key, and vendors' quirks.

A local vLLM or Ollama is connected by base URL with no key at all, and the gateway then
sends it no credential; one that ignores keys takes whatever was pasted. Groq, DeepSeek
and OpenRouter each speak OpenAI's format with a twist of their own (usage in another
place, cache hits in other fields, comments in the stream, a key checked on another
route): each is played by an emulator that plays that twist, and called through both
front doors with the official SDKs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import anthropic
import httpx
import openai
import pytest

from tests.e2e.flows import discovered_models, grant_when_known, listed, usage_events
from tests.e2e.providers import connect_kind, create_workspace
from tests.emulator import EmulatorState, provider_base_url, running_emulator
from tests.stack import Stack
from tests.support import Workspace, eventually, gateway_client, unique

pytestmark = pytest.mark.e2e

PROMPT: Final = "hello, local model"
MESSAGES: Final[list[Any]] = [{"role": "user", "content": PROMPT}]
CACHED: Final = 2
REASONING: Final = 3


@pytest.fixture
async def admin(stack: Stack) -> AsyncIterator[Workspace]:
    async with gateway_client({name: stack.url(name) for name in stack.services}) as client:
        yield await create_workspace(stack, client)


@pytest.fixture
async def local_server() -> AsyncIterator[tuple[EmulatorState, str]]:
    state = EmulatorState(models=["llama-local", "qwen-local"], keyless=True)
    async with running_emulator(state) as base_url:
        yield state, base_url


async def _member_token(stack: Stack, ws: Workspace, model: dict[str, Any]) -> str:
    """Grant an enabled ``model`` to the workspace; a member's token once the proxy knows."""
    await grant_when_known(ws, model["id"], {"principal_kind": "workspace"})
    member = await ws.member("member")
    token = await ws.token_for(member["id"])
    await eventually(lambda: listed(stack, token, model["name"]), within=10)
    return token


def _openai(stack: Stack, token: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=stack.openai_base_url, api_key=token, max_retries=0)


def _anthropic(stack: Stack, token: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=stack.openai_base_url.removesuffix("/v1"), api_key=token, max_retries=0
    )


async def test_a_server_without_a_key_is_connected_and_called_without_one(
    stack: Stack, admin: Workspace, local_server: tuple[EmulatorState, str]
) -> None:
    """No key pasted: keyvault stores none, and neither catalog nor the proxy sends a credential."""
    state, base_url = local_server
    connection = await admin.ok(
        "POST",
        "/keyvault/v1/connections",
        json={"provider": "openai-compatible", "name": unique("ollama"), "base_url": base_url},
    )
    assert connection["has_key"] is False
    assert connection["masked_key"] == "(none)" and connection["fingerprint"] == ""

    models = await discovered_models(admin, connection["id"], count=2)
    model = next(m for m in models if m["upstream_id"] == "llama-local")
    await admin.ok("POST", f"/catalog/v1/models/{model['id']}/enable")
    token = await _member_token(stack, admin, model)

    client = _openai(stack, token)
    try:
        answer = await client.chat.completions.create(model=model["name"], messages=MESSAGES)
        assert answer.choices[0].message.content == f"Hello from llama-local: {PROMPT}"
        pieces = [
            chunk.choices[0].delta.content or ""
            async for chunk in await client.chat.completions.create(
                model=model["name"], messages=MESSAGES, stream=True
            )
            if chunk.choices
        ]
        assert "".join(pieces) == f"Hello from llama-local: {PROMPT}"
    finally:
        await client.close()

    sent = state.requests_to("/models") + state.requests_to("/chat/completions")
    assert len(state.requests_to("/chat/completions")) == 2
    assert all("authorization" not in r.headers for r in sent), [r.headers for r in sent]


async def test_a_server_that_ignores_keys_takes_whatever_was_pasted(
    stack: Stack, admin: Workspace, local_server: tuple[EmulatorState, str]
) -> None:
    state, base_url = local_server
    pasted = "anything-" + unique("goes")
    connection = await admin.ok(
        "POST",
        "/keyvault/v1/connections",
        json={
            "provider": "openai-compatible",
            "name": unique("vllm"),
            "base_url": base_url,
            "api_key": pasted,
        },
    )
    assert connection["has_key"] is True and pasted not in str(connection)

    models = await discovered_models(admin, connection["id"], count=2)
    model = next(m for m in models if m["upstream_id"] == "qwen-local")
    await admin.ok("POST", f"/catalog/v1/models/{model['id']}/enable")
    client = _anthropic(stack, await _member_token(stack, admin, model))
    try:
        answer = await client.messages.create(model=model["name"], max_tokens=64, messages=MESSAGES)
    finally:
        await client.close()

    assert answer.content[0].type == "text"
    assert answer.content[0].text == f"Hello from qwen-local: {PROMPT}"
    assert state.requests_to("/chat/completions")[-1].bearer == pasted


@pytest.mark.parametrize("provider", ["openai", "anthropic", "groq"])
async def test_only_an_openai_compatible_server_goes_without_a_key(
    stack: Stack, admin: Workspace, local_server: tuple[EmulatorState, str], provider: str
) -> None:
    """A provider whose API always wants a key is refused without one, and nothing is stored."""
    _, base_url = local_server
    name = unique(provider)
    refused = await admin.call(
        "POST",
        "/keyvault/v1/connections",
        json={
            "provider": provider,
            "name": name,
            "base_url": provider_base_url(base_url, provider),
            "api_key": "   ",
        },
    )
    assert refused.status_code == 422, refused.text
    assert "api_key" in refused.json()["error"]["message"]

    connections = await admin.ok("GET", "/keyvault/v1/connections")
    assert name not in [c["name"] for c in connections["data"]]


async def test_a_keyless_connection_can_be_given_a_key_later_and_back(
    stack: Stack, admin: Workspace, local_server: tuple[EmulatorState, str]
) -> None:
    _, base_url = local_server
    connection = await admin.ok(
        "POST",
        "/keyvault/v1/connections",
        json={"provider": "openai-compatible", "name": unique("lmstudio"), "base_url": base_url},
    )
    keyed = await admin.ok(
        "PUT",
        f"/keyvault/v1/connections/{connection['id']}/key",
        json={"api_key": "sk-local-0123456789abcdef"},
    )
    assert keyed["has_key"] is True and keyed["masked_key"] == "sk-…cdef"
    keyless = await admin.ok("PUT", f"/keyvault/v1/connections/{connection['id']}/key", json={})
    assert keyless["has_key"] is False and keyless["secret_version"] == 3


async def test_groq_stream_usage_and_switched_off_models(stack: Stack, admin: Workspace) -> None:
    """Groq puts a stream's usage in x_groq and lists switched-off models: both handled."""
    state = EmulatorState(
        models=["llama-groq", "retired-groq"],
        inactive_models=["retired-groq"],
        openai_flavour="groq",
        cached_tokens=CACHED,
    )
    async with running_emulator(state) as base_url:
        connection, model, _ = await connect_kind(
            admin, state, base_url, "groq", grant=False, upstream_id="llama-groq"
        )
        listed_models = await discovered_models(admin, connection["id"], count=1)
        assert [m["upstream_id"] for m in listed_models] == ["llama-groq"]
        token = await _member_token(stack, admin, model)

        client = _openai(stack, token)
        try:
            stream = await client.chat.completions.create(
                model=model["name"],
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        finally:
            await client.close()
        claude = _anthropic(stack, token)
        try:
            async with claude.messages.stream(
                model=model["name"], max_tokens=64, messages=MESSAGES
            ) as translated:
                final = await translated.get_final_message()
        finally:
            await claude.close()

    assert text == f"Hello from llama-groq: {PROMPT}"
    assert final.usage.output_tokens > 0
    assert final.usage.cache_read_input_tokens == CACHED
    events = await usage_events(stack, admin.id, expected=2)
    assert {(e["operation"], e["streamed"]) for e in events} == {("chat", True), ("messages", True)}
    for event in events:
        assert event["input_tokens"] > event["cached_input_tokens"] == CACHED, event
        assert event["output_tokens"] > 0, event


async def test_deepseek_cache_hits_count_as_cached_tokens(stack: Stack, admin: Workspace) -> None:
    state = EmulatorState(models=["deepseek-chat"], openai_flavour="deepseek", cached_tokens=CACHED)
    async with running_emulator(state) as base_url:
        _, model, _ = await connect_kind(
            admin, state, base_url, "deepseek", grant=False, upstream_id="deepseek-chat"
        )
        token = await _member_token(stack, admin, model)
        client = _openai(stack, token)
        claude = _anthropic(stack, token)
        try:
            passed = await client.chat.completions.create(model=model["name"], messages=MESSAGES)
            translated = await claude.messages.create(
                model=model["name"], max_tokens=64, messages=MESSAGES
            )
        finally:
            await client.close()
            await claude.close()

    # The OpenAI door passes DeepSeek's body through as it came; the Anthropic door maps it.
    assert passed.usage is not None and passed.usage.model_extra is not None
    assert passed.usage.model_extra["prompt_cache_hit_tokens"] == CACHED
    assert translated.usage.cache_read_input_tokens == CACHED
    events = await usage_events(stack, admin.id, expected=2)
    assert sorted(e["operation"] for e in events) == ["chat", "messages"]
    assert all(e["cached_input_tokens"] == CACHED for e in events), events


async def test_openrouter_key_check_vendor_ids_and_stream_comments(
    stack: Stack, admin: Workspace
) -> None:
    """OpenRouter: the key is checked on /key, ids carry the vendor, streams carry comments."""
    state = EmulatorState(models=["anthropic/claude-routed"], openai_flavour="openrouter")
    async with running_emulator(state) as base_url:
        connection, model, key = await connect_kind(
            admin, state, base_url, "openrouter", grant=False, upstream_id="anthropic/claude-routed"
        )
        assert model["upstream_id"] == "anthropic/claude-routed"
        assert model["name"] == f"{connection['name']}/anthropic/claude-routed"
        assert [r.bearer for r in state.requests_to("/key")] == [key]
        token = await _member_token(stack, admin, model)

        async with httpx.AsyncClient(base_url=stack.openai_base_url) as raw:
            relayed = await raw.post(
                "/chat/completions",
                json={"model": model["name"], "messages": MESSAGES, "stream": True},
                headers={"Authorization": f"Bearer {token}"},
            )
        claude = _anthropic(stack, token)
        try:
            async with claude.messages.stream(
                model=model["name"], max_tokens=64, messages=MESSAGES
            ) as translated:
                text = "".join([piece async for piece in translated.text_stream])
        finally:
            await claude.close()

    # Passed through as the provider wrote it, comments included; SDKs skip them.
    assert relayed.status_code == 200
    assert b": OPENROUTER PROCESSING" in relayed.content
    assert relayed.content.rstrip().endswith(b"data: [DONE]")
    assert text == f"Hello from anthropic/claude-routed: {PROMPT}"
