"""The doors beside chat: Responses, count_tokens, embeddings; and what every door shares.

Through the running stack, with one connection of every provider kind: the Responses
door answers plain and streamed for any provider (passed through where the provider
speaks it), count_tokens is Anthropic's own count or the documented estimate, embeddings
reach the providers that have them, Anthropic's headers reach Anthropic unchanged, and
every door makes the same access decision and records usage.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

import anthropic
import httpx
import openai
import orjson
import pytest
from anthropic._constants import ANTHROPIC_API_VERSION

from shared.translation import estimate_input_tokens
from tests.e2e.flows import grant_when_known, listed, usage_events
from tests.e2e.providers import (
    KINDS,
    UPSTREAM_MODEL,
    Providers,
    connect_every_provider,
    connect_kind,
)
from tests.emulator import EmulatorState, running_emulator
from tests.stack import Stack
from tests.support import eventually, gateway_client

pytestmark = pytest.mark.e2e

PROMPT: Final = "hello through the door"
EXPECTED: Final = f"Hello from {UPSTREAM_MODEL}: {PROMPT}"
MESSAGES: Final[list[Any]] = [{"role": "user", "content": PROMPT}]
NATIVE_RESPONSES: Final = frozenset({"openai", "xai"})


@pytest.fixture(scope="module")
async def provider_emulator() -> AsyncIterator[tuple[EmulatorState, str]]:
    state = EmulatorState(models=[UPSTREAM_MODEL])
    async with running_emulator(state) as base_url:
        yield state, base_url


@pytest.fixture(scope="module")
async def providers(
    stack: Stack, provider_emulator: tuple[EmulatorState, str]
) -> AsyncIterator[Providers]:
    async with gateway_client({name: stack.url(name) for name in stack.services}) as client:
        yield await connect_every_provider(stack, client, *provider_emulator)


@pytest.fixture
def emulator(provider_emulator: tuple[EmulatorState, str]) -> Iterator[EmulatorState]:
    state = provider_emulator[0]
    state.requests.clear()
    yield state
    state.scenario, state.chunk_delay, state.stream_chunks = "text", 0.0, 4
    state.faults.clear()


@pytest.fixture
async def sdk(stack: Stack, providers: Providers) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=stack.openai_base_url, api_key=providers.token, max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def claude_sdk(stack: Stack, providers: Providers) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=stack.url("proxy"), api_key=providers.token, max_retries=0
    ) as client:
        yield client


@pytest.mark.parametrize("kind", KINDS)
async def test_the_responses_door_answers_plain_and_streamed(
    sdk: openai.AsyncOpenAI, providers: Providers, emulator: EmulatorState, kind: str
) -> None:
    """The OpenAI SDK's Responses calls reach every provider; OpenAI and xAI get them unchanged, the others through translation."""
    model = providers.models[kind]
    plain = await sdk.responses.create(model=model, input=PROMPT)
    stream = await sdk.responses.create(model=model, input=PROMPT, stream=True)
    events = [event async for event in stream]

    assert plain.output_text == EXPECTED
    assert plain.usage is not None and plain.usage.output_tokens > 0
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == EXPECTED and len(deltas) > 1
    assert events[-1].type == "response.completed"
    assert events[-1].response.usage is not None and events[-1].response.usage.output_tokens > 0  # type: ignore[union-attr]
    passed_through = len(emulator.requests_to("/responses")) == 2
    assert passed_through == (kind in NATIVE_RESPONSES)


@pytest.mark.parametrize("kind", ["openai", "bedrock"])
async def test_the_responses_door_carries_function_calls(
    sdk: openai.AsyncOpenAI, providers: Providers, emulator: EmulatorState, kind: str
) -> None:
    """Function tools offered through the Responses door come back as function_call items with their arguments."""
    emulator.scenario = "tool_call"
    tool: Any = {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    answer = await sdk.responses.create(
        model=providers.models[kind], input="weather?", tools=[tool]
    )

    calls = [item for item in answer.output if item.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "emulated"})
    ]  # type: ignore[union-attr]


async def test_count_tokens_is_anthropics_own_count_or_the_documented_estimate(
    claude_sdk: anthropic.AsyncAnthropic, providers: Providers, emulator: EmulatorState
) -> None:
    """Anthropic models are counted by Anthropic; any other model gets the documented estimate without a provider call."""
    messages: list[Any] = [{"role": "user", "content": "one two three four"}]

    counted = await claude_sdk.messages.count_tokens(
        model=providers.models["anthropic"], messages=messages
    )
    estimated = await claude_sdk.messages.count_tokens(
        model=providers.models["openai"], messages=messages
    )

    assert counted.input_tokens == 4
    [upstream] = emulator.requests_to("/messages/count_tokens")
    assert upstream.json["model"] == UPSTREAM_MODEL
    assert estimated.input_tokens == estimate_input_tokens({"messages": messages})
    assert len(emulator.requests) == 1


async def test_embeddings_reach_an_openai_style_provider(
    sdk: openai.AsyncOpenAI, providers: Providers, emulator: EmulatorState
) -> None:
    """An OpenAI-style provider's embeddings come back through the SDK, vectors and usage intact."""
    answer = await sdk.embeddings.create(
        model=providers.models["openai-compatible"], input=["a b", "c"]
    )

    assert [len(item.embedding) for item in answer.data] == [8, 8]
    assert answer.usage.prompt_tokens == 3
    assert emulator.requests_to("/embeddings")[-1].json["model"] == UPSTREAM_MODEL


@pytest.mark.parametrize(
    "kind", ["anthropic", "google", "bedrock", "openrouter", "groq", "deepseek"]
)
async def test_embeddings_are_refused_where_the_provider_has_none(
    sdk: openai.AsyncOpenAI, providers: Providers, emulator: EmulatorState, kind: str
) -> None:
    """A model whose provider has no embeddings API gets a clear 400 naming the model, and nothing is sent."""
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk.embeddings.create(model=providers.models[kind], input="a b")

    assert refused.value.code == "unsupported_feature"
    assert refused.value.param == "model"
    assert "embeddings" in refused.value.message
    assert not emulator.requests


async def test_anthropic_version_and_beta_reach_anthropic_unchanged(
    stack: Stack,
    claude_sdk: anthropic.AsyncAnthropic,
    providers: Providers,
    emulator: EmulatorState,
) -> None:
    """The client's anthropic-version and anthropic-beta go to Anthropic as sent, with the provider key, never the gateway token."""
    beta = "prompt-caching-2024-07-31,token-efficient-tools-2025-02-19"
    async with httpx.AsyncClient(base_url=stack.openai_base_url, timeout=30) as client:
        response = await client.post(
            "/messages",
            json={"model": providers.models["anthropic"], "max_tokens": 64, "messages": MESSAGES},
            headers={
                "x-api-key": providers.token,
                "anthropic-version": "2023-06-01",
                "anthropic-beta": beta,
            },
        )
    await claude_sdk.messages.create(
        model=providers.models["anthropic"],
        max_tokens=64,
        messages=MESSAGES,
        extra_headers={"anthropic-beta": "files-api-2025-04-14"},
    )

    assert response.status_code == 200, response.text
    first, second = emulator.requests_to("/messages")
    assert (first.headers["anthropic-version"], first.headers["anthropic-beta"]) == (
        "2023-06-01",
        beta,
    )
    assert second.headers["anthropic-version"] == ANTHROPIC_API_VERSION
    assert second.headers["anthropic-beta"] == "files-api-2025-04-14"
    for sent in (first, second):
        assert sent.api_key == providers.keys["anthropic"]
        assert providers.token not in orjson.dumps(sent.headers).decode()


async def test_every_door_makes_the_same_access_decision(
    stack: Stack,
    providers: Providers,
    emulator: EmulatorState,
    provider_emulator: tuple[EmulatorState, str],
) -> None:
    """An unknown token gets 401, a model not granted 403, an unknown model 404: on every door, in the door's dialect."""
    ws = providers.workspace
    _, model, _ = await connect_kind(ws, *provider_emulator, "openai", grant=False)
    # Granted to the owner alone: once the owner can call it, the proxy knows the model.
    await grant_when_known(ws, model["id"], {"principal_kind": "user", "principal_id": ws.owner_id})
    await eventually(lambda: listed(stack, ws.admin_token, model["name"]), within=10)

    answers: dict[tuple[str, str], int] = {}
    async with httpx.AsyncClient(base_url=stack.openai_base_url, timeout=30) as client:
        for door, (path, body, dialect) in _door_requests(model["name"]).items():
            for case, token, name in (
                ("unknown token", "byom_nobody", model["name"]),
                ("not granted", providers.token, model["name"]),
                ("unknown model", providers.token, "nowhere/nothing"),
            ):
                answer = await client.post(
                    path, json={**body, "model": name}, headers=_auth(dialect, token)
                )
                _assert_dialect(dialect, answer.json())
                answers[(door, case)] = answer.status_code

    assert set(answers.values()) == {401, 403, 404}
    for door in _door_requests(""):
        assert answers[(door, "unknown token")] == 401
        assert answers[(door, "not granted")] == 403
        assert answers[(door, "unknown model")] == 404
    assert not emulator.requests_to("/chat/completions")


def _door_requests(model: str) -> dict[str, tuple[str, dict[str, Any], str]]:
    return {
        "chat": ("/chat/completions", {"model": model, "messages": MESSAGES}, "openai"),
        "responses": ("/responses", {"model": model, "input": PROMPT}, "openai"),
        "embeddings": ("/embeddings", {"model": model, "input": PROMPT}, "openai"),
        "messages": (
            "/messages",
            {"model": model, "max_tokens": 9, "messages": MESSAGES},
            "anthropic",
        ),
        "count_tokens": (
            "/messages/count_tokens",
            {"model": model, "messages": MESSAGES},
            "anthropic",
        ),
    }


def _auth(dialect: str, token: str) -> dict[str, str]:
    if dialect == "anthropic":
        return {"x-api-key": token, "anthropic-version": "2023-06-01"}
    return {"Authorization": f"Bearer {token}"}


def _assert_dialect(dialect: str, body: dict[str, Any]) -> None:
    if dialect == "anthropic":
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
    else:
        assert set(body["error"]) == {"message", "type", "param", "code"}, body


async def test_unsupported_features_are_refused_naming_the_field(
    stack: Stack, providers: Providers, emulator: EmulatorState
) -> None:
    """What a provider cannot carry is a 400 naming the caller's field in the caller's dialect, before any provider call."""
    token = providers.token
    async with httpx.AsyncClient(base_url=stack.openai_base_url, timeout=30) as client:
        chat = await client.post(
            "/chat/completions",
            json={"model": providers.models["anthropic"], "messages": MESSAGES, "logprobs": True},
            headers=_auth("openai", token),
        )
        messages = await client.post(
            "/messages",
            json={
                "model": providers.models["openai"],
                "max_tokens": 9,
                "messages": MESSAGES,
                "top_k": 5,
            },
            headers=_auth("anthropic", token),
        )
        responses = await client.post(
            "/responses",
            json={
                "model": providers.models["google"],
                "input": PROMPT,
                "previous_response_id": "resp_1",
            },
            headers=_auth("openai", token),
        )

    assert (chat.status_code, chat.json()["error"]["param"]) == (400, "logprobs")
    assert messages.status_code == 400
    assert messages.json()["error"]["message"].startswith("top_k")
    assert (responses.status_code, responses.json()["error"]["param"]) == (
        400,
        "previous_response_id",
    )
    assert not emulator.requests


async def test_a_client_leaving_a_translated_stream_cancels_the_provider_stream(
    stack: Stack, providers: Providers, emulator: EmulatorState
) -> None:
    """An Anthropic-door client that leaves a stream from a Gemini model makes the proxy drop the provider's stream too."""
    emulator.stream_chunks, emulator.chunk_delay = 200, 0.05
    cancelled = emulator.streams_cancelled
    body = {
        "model": providers.models["google"],
        "max_tokens": 64,
        "messages": MESSAGES,
        "stream": True,
    }
    async with (
        httpx.AsyncClient(base_url=stack.openai_base_url, timeout=30) as client,
        client.stream(
            "POST", "/messages", json=body, headers=_auth("anthropic", providers.token)
        ) as response,
    ):
        assert response.status_code == 200
        async for _ in response.aiter_raw():
            break

    async def provider_stream_cancelled() -> bool:
        return emulator.streams_cancelled > cancelled

    await eventually(provider_stream_cancelled, within=5)


@pytest.mark.parametrize(
    ("door", "kind", "stream"),
    [
        ("chat", "openai", True),
        ("chat", "openai", False),
        ("messages", "google", True),
        ("responses", "anthropic", True),
    ],
)
async def test_a_client_leaving_before_the_first_byte_cancels_the_provider_request(
    stack: Stack, providers: Providers, emulator: EmulatorState, door: str, kind: str, stream: bool
) -> None:
    """A client that gives up while the model is still thinking makes the proxy hang up too."""
    emulator.delay = 10.0
    abandoned = emulator.requests_abandoned
    path, body, dialect = _door_requests(providers.models[kind])[door]
    try:
        async with httpx.AsyncClient(base_url=stack.openai_base_url, timeout=0.5) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(
                    path, json={**body, "stream": stream}, headers=_auth(dialect, providers.token)
                )

        async def provider_request_abandoned() -> bool:
            return emulator.requests_abandoned > abandoned

        # Long before the model would have answered, or the proxy's read timeout struck.
        await eventually(provider_request_abandoned, within=3)
    finally:
        emulator.delay = 0.0


@pytest.mark.parametrize("kind", ["anthropic", "google"])
async def test_count_tokens_without_messages_is_refused(
    stack: Stack, providers: Providers, kind: str
) -> None:
    async with httpx.AsyncClient(base_url=stack.openai_base_url) as client:
        answer = await client.post(
            "/messages/count_tokens",
            json={"model": providers.models[kind], "messages": []},
            headers=_auth("anthropic", providers.token),
        )

    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert "message" in answer.json()["error"]["message"]


async def test_every_door_records_usage(
    stack: Stack,
    sdk: openai.AsyncOpenAI,
    claude_sdk: anthropic.AsyncAnthropic,
    providers: Providers,
    emulator: EmulatorState,
) -> None:
    """Each door's calls land as usage events naming the door's operation, with the tokens the provider reported."""
    emulator.cached_tokens, emulator.reasoning_tokens = 2, 3
    try:
        await sdk.chat.completions.create(model=providers.models["deepseek"], messages=MESSAGES)
        async with claude_sdk.messages.stream(
            model=providers.models["anthropic"], max_tokens=64, messages=MESSAGES
        ) as stream:
            await stream.get_final_message()
        await claude_sdk.messages.create(
            model=providers.models["bedrock"], max_tokens=64, messages=MESSAGES
        )
        await sdk.responses.create(model=providers.models["openai"], input=PROMPT)
        await sdk.embeddings.create(model=providers.models["xai"], input="a b c")
        await claude_sdk.messages.count_tokens(
            model=providers.models["anthropic"], messages=MESSAGES
        )
    finally:
        emulator.cached_tokens, emulator.reasoning_tokens = 0, 0

    events = await usage_events(stack, providers.workspace.id, expected=6)
    by_operation = {(e["operation"], e["provider"], e["streamed"]): e for e in events}
    chat = by_operation[("chat", "deepseek", False)]
    streamed = by_operation[("messages", "anthropic", True)]
    translated = by_operation[("messages", "bedrock", False)]
    responses = by_operation[("responses", "openai", False)]
    embeddings = by_operation[("embeddings", "xai", False)]
    counted = by_operation[("count_tokens", "anthropic", False)]
    for generated in (chat, streamed, translated, responses):
        assert generated["status"] == 200
        assert generated["input_tokens"] > generated["cached_input_tokens"] == 2, generated
        assert generated["output_tokens"] > 0
    assert chat["reasoning_tokens"] == responses["reasoning_tokens"] == 3
    assert embeddings["input_tokens"] == 3 and embeddings["output_tokens"] == 0
    assert counted["input_tokens"] == counted["output_tokens"] == 0


STREAM_CASES: Final = [
    ("chat", "openai"),
    ("chat", "bedrock"),
    ("messages", "anthropic"),
    ("messages", "google"),
]


def _stream_request(door: str, model: str, token: str) -> dict[str, Any]:
    if door == "chat":
        body: dict[str, Any] = {"model": model, "messages": MESSAGES, "stream": True}
        return {"url": "/chat/completions", "json": body, "headers": _auth("openai", token)}

    body = {"model": model, "max_tokens": 64, "messages": MESSAGES, "stream": True}
    return {"url": "/messages", "json": body, "headers": _auth("anthropic", token)}


@pytest.mark.parametrize(("door", "kind"), STREAM_CASES)
async def test_streams_end_with_the_dialects_end_marker(
    stack: Stack, providers: Providers, emulator: EmulatorState, door: str, kind: str
) -> None:
    """An OpenAI stream ends with [DONE] and no usage chunk unless asked; an Anthropic stream ends with message_stop."""
    async with httpx.AsyncClient(base_url=stack.openai_base_url, timeout=30) as client:
        response = await client.post(
            **_stream_request(door, providers.models[kind], providers.token)
        )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    if door == "chat":
        assert response.content.endswith(b"data: [DONE]\n\n")
        assert b'"choices":[]' not in response.content
    else:
        assert response.content.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


@pytest.mark.parametrize(("door", "kind"), STREAM_CASES)
async def test_streams_are_relayed_as_the_provider_sends_them(
    stack: Stack, providers: Providers, emulator: EmulatorState, door: str, kind: str
) -> None:
    """The first piece of a slow stream reaches the client long before the provider has finished."""
    emulator.stream_chunks, emulator.chunk_delay = 6, 0.2
    loop = asyncio.get_running_loop()
    arrivals: list[float] = []
    async with (
        httpx.AsyncClient(base_url=stack.openai_base_url, timeout=30) as client,
        client.stream(
            "POST", **_stream_request(door, providers.models[kind], providers.token)
        ) as response,
    ):
        started = loop.time()
        async for piece in response.aiter_raw():
            if b"Hel" in piece:
                arrivals.append(loop.time() - started)
        ended = loop.time() - started

    assert arrivals, "text arrived"
    assert ended - arrivals[0] > 0.6, (arrivals, ended)
