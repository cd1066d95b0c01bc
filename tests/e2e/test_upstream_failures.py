"""What a member sees when the provider fails, on every front door, through the running stack.

Upstream error statuses, rate limits with ``Retry-After``, timeouts, connections reset
before or during an answer, and providers failing in the middle of a stream: each comes
back in the caller's dialect (OpenAI's error object, or Anthropic's), with a fitting
status, the provider named, and never the provider key.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.conftest import Infra
from tests.e2e.flaky_link import FlakyLink, flaky_link
from tests.e2e.providers import UPSTREAM_MODEL, Providers, connect_every_provider, connect_kind
from tests.emulator import EmulatorState, running_emulator
from tests.stack import Stack
from tests.support import gateway_client

pytestmark = pytest.mark.e2e

READ_TIMEOUT_SECONDS: Final = 1.5
KINDS: Final = ("openai", "openai-compatible", "anthropic", "google", "bedrock")
PROMPT: Final = [{"role": "user", "content": "hello there"}]
# What a member sees for each upstream status, per door (overloaded is 529 on Anthropic's).
OPENAI_STATUS: Final = {400: 400, 401: 502, 403: 502, 404: 404, 413: 413, 429: 429, 500: 502}
OPENAI_STATUS_ALL: Final = {**OPENAI_STATUS, 503: 503, 529: 503}
ANTHROPIC_STATUS_ALL: Final = {**OPENAI_STATUS, 503: 529, 529: 529}


@pytest.fixture(scope="module")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack with a short provider read timeout, to reach it."""
    with infra.stack(
        log_dir=Path(tmp_path_factory.mktemp("upstream-failure-logs")),
        extra_env={"proxy": {"BYOM_UPSTREAM_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT_SECONDS)}},
    ) as running:
        yield running


@dataclass
class Setup:
    providers: Providers
    state: EmulatorState
    link: FlakyLink
    # Connections through the flaky link, by kind: kind -> model name at the gateway.
    linked: dict[str, str]


@pytest.fixture(scope="module")
async def setup(stack: Stack) -> AsyncIterator[Setup]:
    state = EmulatorState(models=[UPSTREAM_MODEL])
    async with (
        running_emulator(state) as base_url,
        flaky_link(int(base_url.rsplit(":", 1)[1].split("/")[0])) as (link, port),
        gateway_client({name: stack.url(name) for name in stack.services}) as client,
    ):
        providers = await connect_every_provider(stack, client, state, base_url, KINDS)
        linked = {}
        for kind in ("openai", "anthropic"):
            base = f"http://127.0.0.1:{port}/v1"
            _, model, _ = await connect_kind(providers.workspace, state, base, kind)
            linked[kind] = model["name"]
        yield Setup(providers, state, link, linked)


@pytest.fixture
def emulator(setup: Setup) -> Iterator[EmulatorState]:
    yield setup.state
    setup.state.scenario, setup.state.delay, setup.state.chunk_delay = "text", 0.0, 0.0
    setup.state.faults.clear()
    setup.link.plan = "pass"


def door_request(door: str, model: str, token: str, **extra: Any) -> dict[str, Any]:
    """The raw HTTP request a client of ``door`` would send."""
    if door == "chat":
        body = {"model": model, "messages": PROMPT, **extra}
        return {
            "url": "/chat/completions",
            "json": body,
            "headers": {"Authorization": f"Bearer {token}"},
        }

    body = {"model": model, "max_tokens": 64, "messages": PROMPT, **extra}
    headers = {"x-api-key": token, "anthropic-version": "2023-06-01"}
    return {"url": "/messages", "json": body, "headers": headers}


async def call(stack: Stack, door: str, model: str, token: str, **extra: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.openai_base_url, timeout=30) as client:
        return await client.post(**door_request(door, model, token, **extra))


def error_of(door: str, response: httpx.Response) -> dict[str, Any]:
    """The error object, checked to have the door's shape."""
    body = response.json()
    if door == "messages":
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
    else:
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return dict(body["error"])


@pytest.mark.parametrize(
    ("door", "kind", "expected"),
    [
        ("chat", "openai", OPENAI_STATUS_ALL),
        ("chat", "anthropic", OPENAI_STATUS_ALL),
        ("messages", "anthropic", ANTHROPIC_STATUS_ALL),
        ("messages", "openai", ANTHROPIC_STATUS_ALL),
    ],
    ids=["chat-to-openai", "chat-to-anthropic", "messages-to-anthropic", "messages-to-openai"],
)
async def test_upstream_statuses_come_back_in_the_callers_dialect(
    stack: Stack,
    setup: Setup,
    emulator: EmulatorState,
    door: str,
    kind: str,
    expected: dict[int, int],
) -> None:
    """Each upstream error status maps to the documented status, in the door's error shape, naming the provider, never the key."""
    providers, key = setup.providers, setup.providers.keys[kind]
    seen: dict[int, int] = {}
    for status in expected:
        # The provider quotes the key in its message: the gateway must not repeat it.
        raw = orjson.dumps({"error": {"message": f"failed for key {key}", "type": "x"}})
        emulator.fail_next(status, retry_after=7 if status == 429 else None, raw_body=raw)
        response = await call(stack, door, providers.models[kind], providers.token)
        seen[status] = response.status_code

        error = error_of(door, response)
        assert providers.name(kind) in error["message"], (status, error)
        assert key not in response.text and key[-12:] not in response.text
        if status == 429:
            assert response.headers["retry-after"] == "7"

    assert seen == expected


@pytest.mark.parametrize("door", ["chat", "messages"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_a_slow_provider_times_out_with_504(
    stack: Stack, setup: Setup, emulator: EmulatorState, door: str, stream: bool
) -> None:
    """A provider slower than the read timeout gives 504 in the door's dialect, naming the provider."""
    emulator.delay = READ_TIMEOUT_SECONDS + 0.5
    kind = "google"

    response = await call(
        stack, door, setup.providers.models[kind], setup.providers.token, stream=stream
    )
    # The emulator takes its next fault once the delay is over: let the abandoned request
    # get there now, or it would take a fault that a later test queues for itself.
    await asyncio.sleep(0.5 + 0.2)

    assert response.status_code == 504
    error = error_of(door, response)
    assert setup.providers.name(kind) in error["message"]
    assert error["type"] == ("timeout_error" if door == "messages" else "api_error")


@pytest.mark.parametrize(
    ("door", "kind"),
    [("chat", "openai"), ("chat", "anthropic"), ("messages", "anthropic"), ("messages", "openai")],
)
async def test_a_connection_reset_before_the_answer_is_a_502(
    stack: Stack, setup: Setup, emulator: EmulatorState, door: str, kind: str
) -> None:
    """A provider connection reset before any answer comes back as 502 in the door's dialect."""
    setup.link.plan = "reset_before_answer"
    resets = setup.link.resets

    response = await call(stack, door, setup.linked[kind], setup.providers.token)

    assert setup.link.resets == resets + 1
    assert response.status_code == 502
    assert "connection" in error_of(door, response)["message"]


@pytest.mark.parametrize(
    ("door", "kind"),
    [("chat", "openai"), ("chat", "anthropic"), ("messages", "anthropic"), ("messages", "openai")],
)
async def test_a_connection_reset_mid_stream_ends_with_an_error_event(
    stack: Stack, setup: Setup, emulator: EmulatorState, door: str, kind: str
) -> None:
    """A stream whose provider connection breaks midway ends with the door's error event, which the SDK raises."""
    emulator.stream_chunks, emulator.chunk_delay = 8, 0.05
    setup.link.plan = "reset_mid_answer"
    token, model = setup.providers.token, setup.linked[kind]
    try:
        if door == "chat":
            async with openai.AsyncOpenAI(
                base_url=stack.openai_base_url, api_key=token, max_retries=0
            ) as sdk:
                stream = await sdk.chat.completions.create(
                    model=model, messages=PROMPT, stream=True
                )  # type: ignore[arg-type]
                with pytest.raises(openai.APIError) as broken:
                    async for _ in stream:
                        pass
        else:
            async with anthropic.AsyncAnthropic(
                base_url=stack.url("proxy"), api_key=token, max_retries=0
            ) as sdk:
                with pytest.raises(anthropic.APIStatusError) as broken:  # type: ignore[assignment]
                    async with sdk.messages.stream(
                        model=model,
                        max_tokens=64,
                        messages=PROMPT,  # type: ignore[arg-type]
                    ) as events:
                        async for _ in events:
                            pass
    finally:
        emulator.stream_chunks = 4

    assert "connection failed or broke" in broken.value.message


@pytest.mark.parametrize(
    ("door", "kind"),
    [
        ("chat", "openai"),
        ("chat", "anthropic"),
        ("chat", "google"),
        ("chat", "bedrock"),
        ("messages", "anthropic"),
        ("messages", "openai"),
        ("messages", "google"),
        ("messages", "bedrock"),
    ],
)
async def test_a_provider_failing_mid_stream_ends_with_an_error_event(
    stack: Stack, setup: Setup, emulator: EmulatorState, door: str, kind: str
) -> None:
    """A provider's own error in the middle of a stream reaches the SDK as an error event naming the provider, after the text so far."""
    emulator.scenario = "mid_stream_error"
    token, model = setup.providers.token, setup.providers.models[kind]
    received: list[str] = []
    if door == "chat":
        async with openai.AsyncOpenAI(
            base_url=stack.openai_base_url, api_key=token, max_retries=0
        ) as sdk:
            stream = await sdk.chat.completions.create(model=model, messages=PROMPT, stream=True)  # type: ignore[arg-type]
            with pytest.raises(openai.APIError) as failed:
                async for chunk in stream:
                    received.extend(c.delta.content or "" for c in chunk.choices)
    else:
        async with anthropic.AsyncAnthropic(
            base_url=stack.url("proxy"), api_key=token, max_retries=0
        ) as sdk:
            with pytest.raises(anthropic.APIStatusError) as failed:  # type: ignore[assignment]
                async with sdk.messages.stream(
                    model=model,
                    max_tokens=64,
                    messages=PROMPT,  # type: ignore[arg-type]
                ) as events:
                    async for text in events.text_stream:
                        received.append(text)

    assert "".join(received), "the text before the failure arrived"
    assert setup.providers.name(kind) in failed.value.message


async def test_a_provider_failing_mid_stream_on_the_responses_door(
    stack: Stack, setup: Setup, emulator: EmulatorState
) -> None:
    """Responses streams that fail midway end with an error event and response.failed, natively and translated."""
    emulator.scenario = "mid_stream_error"
    async with openai.AsyncOpenAI(
        base_url=stack.openai_base_url, api_key=setup.providers.token, max_retries=0
    ) as sdk:
        for kind in ("openai", "anthropic"):
            stream = await sdk.responses.create(
                model=setup.providers.models[kind], input="hello there", stream=True
            )
            types = [event.type async for event in stream]

            assert "response.output_text.delta" in types, kind
            assert types[-2:] == ["error", "response.failed"], (kind, types)


@pytest.mark.parametrize(
    ("door", "kind"),
    [
        ("responses", "openai"),
        ("responses", "anthropic"),
        ("embeddings", "openai-compatible"),
        ("count_tokens", "anthropic"),
        ("messages", "google"),
        ("chat", "bedrock"),
    ],
)
async def test_a_rate_limit_keeps_retry_after_on_every_door(
    stack: Stack, setup: Setup, emulator: EmulatorState, door: str, kind: str
) -> None:
    """A provider's 429 reaches every door's SDK as its rate-limit error, Retry-After kept for the SDK's own retries."""
    emulator.fail_next(429, retry_after=7)
    token, model = setup.providers.token, setup.providers.models[kind]
    async with (
        openai.AsyncOpenAI(base_url=stack.openai_base_url, api_key=token, max_retries=0) as oa,
        anthropic.AsyncAnthropic(base_url=stack.url("proxy"), api_key=token, max_retries=0) as an,
    ):
        errors: tuple[type[Exception], ...] = (openai.RateLimitError, anthropic.RateLimitError)
        with pytest.raises(errors) as limited:
            if door == "responses":
                await oa.responses.create(model=model, input="hello")
            elif door == "embeddings":
                await oa.embeddings.create(model=model, input="hello")
            elif door == "count_tokens":
                await an.messages.count_tokens(model=model, messages=PROMPT)  # type: ignore[arg-type]
            elif door == "messages":
                await an.messages.create(model=model, max_tokens=64, messages=PROMPT)  # type: ignore[arg-type]
            else:
                await oa.chat.completions.create(model=model, messages=PROMPT)  # type: ignore[arg-type]

    error = limited.value
    assert isinstance(error, openai.RateLimitError | anthropic.RateLimitError)
    assert error.response.headers["retry-after"] == "7"
    assert setup.providers.name(kind) in error.message


async def test_no_provider_key_reached_a_log_or_a_span(stack: Stack, setup: Setup) -> None:
    """After every failure above, on every door, no service log or trace holds any provider key."""
    logs = stack.logs()
    spans = orjson.dumps(stack.spans()).decode()

    assert "upstream_failed" in logs and "upstream_stream_failed" in logs
    for key in setup.providers.keys.values():
        assert key not in logs and key[-16:] not in logs
        assert key not in spans and key[-16:] not in spans


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_a_compressed_answer_nobody_asked_for_is_a_502(
    stack: Stack, setup: Setup, emulator: EmulatorState, stream: bool
) -> None:
    """The proxy asks for answers uncompressed; gzip bytes are refused, not relayed as JSON or counted as free."""
    answer = gzip.compress(
        b'{"id":"x","object":"chat.completion","choices":[],"usage":{"prompt_tokens":9}}'
    )
    emulator.fail_next(200, raw_body=answer, headers={"Content-Encoding": "gzip"})

    response = await call(
        stack, "chat", setup.providers.models["openai"], setup.providers.token, stream=stream
    )

    assert response.status_code == 502
    error = error_of("chat", response)
    assert "compressed" in error["message"]
    assert setup.providers.name("openai") in error["message"]


async def test_an_answer_the_adapter_cannot_read_is_a_502(
    stack: Stack, setup: Setup, emulator: EmulatorState
) -> None:
    """A 200 from Anthropic whose text block holds a number is the provider's fault: 502, not a crash."""
    emulator.fail_next(
        200,
        raw_body=orjson.dumps(
            {
                "id": "msg_odd",
                "type": "message",
                "role": "assistant",
                "model": UPSTREAM_MODEL,
                "content": [{"type": "text", "text": 5}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 1},
            }
        ),
    )

    response = await call(stack, "chat", setup.providers.models["anthropic"], setup.providers.token)

    assert response.status_code == 502
    assert "could not read" in error_of("chat", response)["message"]


async def test_a_stream_event_that_never_ends_is_cut_off(
    stack: Stack, setup: Setup, emulator: EmulatorState
) -> None:
    """A provider streaming one event without end is not held in memory for ever: the stream ends with an error event."""
    endless = b"data: {" + b'"x":"' + b"y" * (17 * 1024 * 1024)
    emulator.fail_next(200, raw_body=endless, headers={"Content-Type": "text/event-stream"})

    async with (
        httpx.AsyncClient(base_url=stack.openai_base_url, timeout=30) as client,
        client.stream(
            **door_request(
                "chat", setup.providers.models["openai"], setup.providers.token, stream=True
            ),
            method="POST",
        ) as response,
    ):
        received = b"".join([piece async for piece in response.aiter_bytes()])

    assert response.status_code == 200
    assert len(received) < 1024 * 1024
    error = orjson.loads(received.split(b"data: ", 1)[1].split(b"\n", 1)[0])["error"]
    assert "larger than 16 MiB" in error["message"]
