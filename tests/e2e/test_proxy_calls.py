"""How the proxy carries calls: usage accounting, upstream failures, bad input, departures."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from tests.conftest import Infra
from tests.e2e.conftest import OpenAIFor
from tests.e2e.flows import ReadyModel, grant_when_known, listed, ready_model
from tests.emulator import EmulatorState
from tests.stack import Stack
from tests.support import Workspace, eventually

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "hello there"}]
MAX_BODY_BYTES = 1024 * 1024
READ_TIMEOUT_SECONDS = 2


@pytest.fixture(scope="module")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack with a small body limit and a short provider timeout, to reach both."""
    proxy_env = {
        "BYOM_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "BYOM_UPSTREAM_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT_SECONDS),
    }
    with infra.stack(
        log_dir=Path(tmp_path_factory.mktemp("proxy-calls-logs")),
        extra_env={"proxy": proxy_env},
    ) as running:
        yield running


@pytest.fixture
async def ready(
    stack: Stack, workspace: Workspace, emulator: tuple[EmulatorState, str]
) -> ReadyModel:
    return await ready_model(stack, workspace, emulator)


def raw_client(stack: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.openai_base_url, timeout=30)


async def test_stream_without_usage_request_hides_the_usage_chunk(
    openai_for: OpenAIFor, stack: Stack, ready: ReadyModel
) -> None:
    """A client that did not ask for usage sees no usage chunk, while the gateway still counts the tokens."""
    stream = await openai_for(ready.token).chat.completions.create(
        model=ready.model["name"], messages=MESSAGES, stream=True
    )
    chunks = [chunk async for chunk in stream]

    assert chunks and all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)


async def test_x_api_key_header_is_accepted_like_bearer(stack: Stack, ready: ReadyModel) -> None:
    """The token works in x-api-key exactly as in Authorization: Bearer."""
    body = {"model": ready.model["name"], "messages": MESSAGES}
    async with raw_client(stack) as client:
        by_header = await client.post(
            "/chat/completions", json=body, headers={"x-api-key": ready.token}
        )
        by_bearer = await client.post(
            "/chat/completions", json=body, headers={"Authorization": f"Bearer {ready.token}"}
        )
        wrong = await client.post(
            "/chat/completions", json=body, headers={"x-api-key": "byom_nope"}
        )

    assert by_header.status_code == by_bearer.status_code == 200
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"


async def test_upstream_rate_limit_keeps_retry_after(
    openai_for: OpenAIFor, stack: Stack, ready: ReadyModel, emulator: tuple[EmulatorState, str]
) -> None:
    """A provider's 429 reaches the client as 429 with its Retry-After, in OpenAI's shape."""
    emulator[0].fail_next(429, retry_after=7)

    with pytest.raises(openai.RateLimitError) as limited:
        await openai_for(ready.token).chat.completions.create(
            model=ready.model["name"], messages=MESSAGES
        )

    assert limited.value.response.headers["retry-after"] == "7"
    assert "rate limiting" in limited.value.message


async def test_upstream_server_error_becomes_bad_gateway(
    openai_for: OpenAIFor, stack: Stack, ready: ReadyModel, emulator: tuple[EmulatorState, str]
) -> None:
    """A provider's 500 comes back as a 502 naming the provider."""
    emulator[0].fail_next(500)

    with pytest.raises(openai.InternalServerError) as failed:
        await openai_for(ready.token).chat.completions.create(
            model=ready.model["name"], messages=MESSAGES
        )

    assert failed.value.status_code == 502
    assert ready.connection["name"] in failed.value.message


async def test_provider_refusing_the_key_is_not_blamed_on_the_member_and_leaks_nothing(
    stack: Stack, ready: ReadyModel, emulator: tuple[EmulatorState, str]
) -> None:
    """When the provider revokes the key (and echoes it), the member gets a 502 that contains no part of it."""
    state = emulator[0]
    state.keys.discard(ready.key)
    try:
        async with raw_client(stack) as client:
            response = await client.post(
                "/chat/completions",
                json={"model": ready.model["name"], "messages": MESSAGES},
                headers={"Authorization": f"Bearer {ready.token}"},
            )
    finally:
        state.keys.add(ready.key)

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_auth_failed"
    for start in range(0, len(ready.key) - 8):
        assert ready.key[start : start + 8] not in response.text


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "x/y"}', "messages"),
        (
            b'{"model": "x/y", "messages": [{"role": "user", "content": "x"}], "stream": "false"}',
            "stream",
        ),
        (
            b'{"model": "x/y", "messages": [{"role": "user", "content": "x"}], "stream": true, "stream_options": "x"}',
            "stream_options",
        ),
    ],
)
async def test_malformed_requests_get_openai_style_400(
    stack: Stack, ready: ReadyModel, body: bytes, param: str | None
) -> None:
    """A body that is not a chat request is refused with 400 naming the field, before any upstream call."""
    async with raw_client(stack) as client:
        response = await client.post(
            "/chat/completions",
            content=body,
            headers={"Authorization": f"Bearer {ready.token}", "Content-Type": "application/json"},
        )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


async def test_client_leaving_mid_stream_cancels_the_upstream_stream(
    stack: Stack, ready: ReadyModel, emulator: tuple[EmulatorState, str]
) -> None:
    """A client that disconnects in the middle of a stream makes the proxy drop the provider's stream too."""
    state = emulator[0]
    state.stream_chunks, state.chunk_delay = 200, 0.05
    cancelled_before = state.streams_cancelled
    try:
        async with (
            raw_client(stack) as client,
            client.stream(
                "POST",
                "/chat/completions",
                json={"model": ready.model["name"], "messages": MESSAGES, "stream": True},
                headers={"Authorization": f"Bearer {ready.token}"},
            ) as response,
        ):
            assert response.status_code == 200
            async for _ in response.aiter_raw():
                break

        async def upstream_cancelled() -> bool:
            return state.streams_cancelled > cancelled_before

        await eventually(upstream_cancelled, within=5)
    finally:
        state.stream_chunks, state.chunk_delay = 4, 0.0
        await asyncio.sleep(0)


async def test_a_body_over_the_limit_is_refused_with_413(stack: Stack, ready: ReadyModel) -> None:
    """A chat body larger than the configured limit gets 413 in OpenAI's shape and never reaches the provider."""
    huge = {
        "model": ready.model["name"],
        "messages": [{"role": "user", "content": "x" * (MAX_BODY_BYTES + 10)}],
    }
    async with raw_client(stack) as client:
        response = await client.post(
            "/chat/completions", json=huge, headers={"Authorization": f"Bearer {ready.token}"}
        )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


async def test_a_slow_provider_times_out_with_504(
    stack: Stack, ready: ReadyModel, emulator: tuple[EmulatorState, str]
) -> None:
    """A provider that answers later than the read timeout gives the client a 504 naming it."""
    state = emulator[0]
    state.delay = READ_TIMEOUT_SECONDS + 1.5
    try:
        async with raw_client(stack) as client:
            response = await client.post(
                "/chat/completions",
                json={"model": ready.model["name"], "messages": MESSAGES},
                headers={"Authorization": f"Bearer {ready.token}"},
            )
    finally:
        state.delay = 0.0

    assert response.status_code == 504
    assert ready.connection["name"] in response.json()["error"]["message"]


async def test_provider_requests_ask_for_uncompressed_bodies(
    stack: Stack, ready: ReadyModel, emulator: tuple[EmulatorState, str]
) -> None:
    """Streams are relayed as bytes, so the proxy asks the provider not to compress them."""
    state = emulator[0]
    async with raw_client(stack) as client:
        await client.post(
            "/chat/completions",
            json={"model": ready.model["name"], "messages": MESSAGES, "stream": True},
            headers={"Authorization": f"Bearer {ready.token}"},
        )

    assert state.requests_to("/chat/completions")[-1].headers["accept-encoding"] == "identity"


async def test_a_client_leaving_a_plain_call_abandons_the_upstream_call(
    stack: Stack, ready: ReadyModel, emulator: tuple[EmulatorState, str]
) -> None:
    """A non-streamed call whose client disconnects is recorded as abandoned (499) long before the provider would answer."""
    state = emulator[0]
    state.delay = READ_TIMEOUT_SECONDS - 0.2
    try:
        async with raw_client(stack) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(
                    "/chat/completions",
                    json={"model": ready.model["name"], "messages": MESSAGES},
                    headers={"Authorization": f"Bearer {ready.token}"},
                    timeout=0.3,
                )
        left_at = asyncio.get_running_loop().time()

        async def abandoned() -> bool:
            return '"status": 499' in stack.logs()

        await eventually(abandoned, within=1.0)
        assert asyncio.get_running_loop().time() - left_at < state.delay
    finally:
        state.delay = 0.0


async def test_each_call_leaves_one_log_line_with_its_own_context(
    openai_for: OpenAIFor, stack: Stack, ready: ReadyModel
) -> None:
    """Per-call lines are written just after the calls, together; each still names its own caller."""
    ws = ready.workspace
    other = await ws.member("other")
    await grant_when_known(
        ws, ready.model["id"], {"principal_kind": "user", "principal_id": other["id"]}
    )
    other_token = await ws.token_for(other["id"])
    await eventually(lambda: listed(stack, other_token, ready.model["name"]), within=10)

    await asyncio.gather(
        *(
            openai_for(token).chat.completions.create(model=ready.model["name"], messages=MESSAGES)
            for token in (ready.token, other_token, ready.token, other_token)
        )
    )

    async def call_lines() -> list[dict[str, object]] | None:
        lines = [
            orjson.loads(line)
            for line in (stack.log_dir / "proxy.log").read_text(errors="replace").splitlines()
            if '"model_call"' in line and ws.id in line
        ]
        return lines if len(lines) >= 4 else None

    lines = await eventually(call_lines, within=5)
    assert len(lines) == 4
    assert sorted(str(line["user_id"]) for line in lines) == sorted(
        [ready.member["id"], other["id"]] * 2
    )
    assert len({line["request_id"] for line in lines}) == 4
    for line in lines:
        assert line["workspace_id"] == ws.id
        assert line["model"] == ready.model["name"]
        assert line["status"] == 200 and line["operation"] == "chat"
