"""Every provider through both front doors, with the official SDKs, through the running stack.

One workspace connects one provider of each kind to the emulator through keyvault, and
enables and grants one model each. Then each cell of front door (the ``openai`` SDK's
chat completions, the ``anthropic`` SDK's messages) x provider x case (plain, streaming,
tools, image, upstream error) makes its calls and checks what the SDK hands back. The
matrix is printed at the end of the run (see ``tests/e2e/conformance_report.py``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import anthropic
import openai
import pytest

from tests.e2e.providers import KINDS, UPSTREAM_MODEL, Providers, connect_every_provider
from tests.emulator import EmulatorState, running_emulator
from tests.stack import Stack
from tests.support import gateway_client

pytest_plugins = ["tests.e2e.conformance_report"]
pytestmark = pytest.mark.e2e

PROMPT: Final = "hello from the matrix"
EXPECTED: Final = f"Hello from {UPSTREAM_MODEL}: {PROMPT}"
# A 1x1 transparent PNG.
PNG: Final = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
SEEN_IMAGE: Final = "I see 1 image(s): image/png (base64)"
SCHEMAS: Final = {
    "get_weather": {"type": "object", "properties": {"city": {"type": "string"}}},
    "get_time": {"type": "object", "properties": {"zone": {"type": "string"}}},
}
ARGUMENTS: Final = {"get_weather": {"city": "emulated"}, "get_time": {"zone": "emulated"}}
RESULTS: Final = {"get_weather": "sunny", "get_time": "noon"}
# Gemini streams each function call whole, so its arguments arrive in one piece.
WHOLE_CALLS: Final = frozenset({"google"})


@pytest.fixture(scope="module")
async def provider_emulator() -> AsyncIterator[tuple[EmulatorState, str]]:
    state = EmulatorState(models=[UPSTREAM_MODEL], stream_chunks=4)
    async with running_emulator(state) as base_url:
        yield state, base_url


@pytest.fixture(scope="module")
async def providers(
    stack: Stack, provider_emulator: tuple[EmulatorState, str]
) -> AsyncIterator[Providers]:
    async with gateway_client({name: stack.url(name) for name in stack.services}) as client:
        yield await connect_every_provider(stack, client, *provider_emulator)


@dataclass
class Cell:
    """What one cell's calls need: both SDKs, the emulator, and the provider under test."""

    openai: openai.AsyncOpenAI
    anthropic: anthropic.AsyncAnthropic
    state: EmulatorState
    providers: Providers
    kind: str

    @property
    def model(self) -> str:
        return self.providers.models[self.kind]

    @property
    def provider_name(self) -> str:
        return self.providers.name(self.kind)


@pytest.fixture
def state(provider_emulator: tuple[EmulatorState, str]) -> Iterator[EmulatorState]:
    """The emulator, put back to plain text answers after each cell."""
    emulated = provider_emulator[0]
    yield emulated
    emulated.scenario = "text"
    emulated.faults.clear()


@pytest.fixture
async def clients(
    stack: Stack, providers: Providers
) -> AsyncIterator[tuple[openai.AsyncOpenAI, anthropic.AsyncAnthropic]]:
    openai_sdk = openai.AsyncOpenAI(
        base_url=stack.openai_base_url, api_key=providers.token, max_retries=0
    )
    anthropic_sdk = anthropic.AsyncAnthropic(
        base_url=stack.url("proxy"), api_key=providers.token, max_retries=0
    )
    yield openai_sdk, anthropic_sdk
    await openai_sdk.close()
    await anthropic_sdk.close()


def assert_tool_results(text: str | None) -> None:
    """The model was given both results (Gemini's function responses wrap them in objects)."""
    assert text is not None and text.startswith("Tool results: ")
    first, second = text.removeprefix("Tool results: ").split("; ")
    assert "sunny" in first and "noon" in second


# -- the OpenAI SDK's chat completions ------------------------------------------------


def openai_tools() -> list[Any]:
    return [
        {"type": "function", "function": {"name": name, "parameters": schema}}
        for name, schema in SCHEMAS.items()
    ]


async def openai_plain(cell: Cell) -> None:
    answer = await cell.openai.chat.completions.create(
        model=cell.model, messages=[{"role": "user", "content": PROMPT}]
    )

    assert answer.choices[0].message.content == EXPECTED
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0


async def openai_stream(cell: Cell) -> None:
    stream = await cell.openai.chat.completions.create(
        model=cell.model,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "".join(deltas) == EXPECTED and len(deltas) > 1
    assert [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


async def openai_tool_calls(cell: Cell) -> None:
    cell.state.scenario = "tool_call"
    messages: list[Any] = [{"role": "user", "content": "weather and time?"}]
    answer = await cell.openai.chat.completions.create(
        model=cell.model, messages=messages, tools=openai_tools()
    )
    calls = answer.choices[0].message.tool_calls or []
    assert answer.choices[0].finish_reason == "tool_calls"
    assert {c.function.name: json.loads(c.function.arguments) for c in calls} == ARGUMENTS  # type: ignore[union-attr]

    stream = await cell.openai.chat.completions.create(
        model=cell.model, messages=messages, tools=openai_tools(), stream=True
    )
    fragments: dict[int, list[str]] = {}
    names: dict[int, str] = {}
    async for chunk in stream:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if delta.function and delta.function.name:
                names[delta.index] = delta.function.name
            if delta.function and delta.function.arguments:
                fragments.setdefault(delta.index, []).append(delta.function.arguments)
    assert {names[i]: json.loads("".join(f)) for i, f in fragments.items()} == ARGUMENTS
    if cell.kind not in WHOLE_CALLS:
        assert all(len(f) > 1 for f in fragments.values()), "arguments arrive split across chunks"

    messages.append(answer.choices[0].message.model_dump(exclude_none=True))
    messages.extend(
        {"role": "tool", "tool_call_id": c.id, "content": RESULTS[c.function.name]}  # type: ignore[union-attr]
        for c in calls
    )
    after = await cell.openai.chat.completions.create(
        model=cell.model, messages=messages, tools=openai_tools()
    )
    assert_tool_results(after.choices[0].message.content)


async def openai_image(cell: Cell) -> None:
    cell.state.scenario = "image_echo"
    answer = await cell.openai.chat.completions.create(
        model=cell.model,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            }
        ],
    )

    assert answer.choices[0].message.content == SEEN_IMAGE


async def openai_upstream_error(cell: Cell) -> None:
    cell.state.fail_next(429, retry_after=7)

    with pytest.raises(openai.RateLimitError) as limited:
        await cell.openai.chat.completions.create(
            model=cell.model, messages=[{"role": "user", "content": PROMPT}]
        )

    assert limited.value.response.headers["retry-after"] == "7"
    assert cell.provider_name in limited.value.message


# -- the Anthropic SDK's messages -----------------------------------------------------


def anthropic_tools() -> list[Any]:
    return [{"name": name, "input_schema": schema} for name, schema in SCHEMAS.items()]


async def anthropic_plain(cell: Cell) -> None:
    message = await cell.anthropic.messages.create(
        model=cell.model, max_tokens=256, messages=[{"role": "user", "content": PROMPT}]
    )

    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == EXPECTED  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


async def anthropic_stream(cell: Cell) -> None:
    async with cell.anthropic.messages.stream(
        model=cell.model, max_tokens=256, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        deltas = [text async for text in stream.text_stream]
        message = await stream.get_final_message()

    assert "".join(deltas) == EXPECTED and len(deltas) > 1
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0


async def anthropic_tool_calls(cell: Cell) -> None:
    cell.state.scenario = "tool_call"
    messages: list[Any] = [{"role": "user", "content": "weather and time?"}]
    message = await cell.anthropic.messages.create(
        model=cell.model, max_tokens=256, messages=messages, tools=anthropic_tools()
    )
    uses = [block for block in message.content if block.type == "tool_use"]
    assert message.stop_reason == "tool_use"
    assert {u.name: u.input for u in uses} == ARGUMENTS  # type: ignore[union-attr]

    async with cell.anthropic.messages.stream(
        model=cell.model, max_tokens=256, messages=messages, tools=anthropic_tools()
    ) as stream:
        partials = [e async for e in stream if e.type == "input_json"]
        streamed = await stream.get_final_message()
    assert {b.name: b.input for b in streamed.content if b.type == "tool_use"} == ARGUMENTS  # type: ignore[union-attr]
    if cell.kind not in WHOLE_CALLS:
        assert len(partials) > len(ARGUMENTS), "arguments arrive split across events"

    messages.append({"role": "assistant", "content": [u.model_dump() for u in uses]})
    results = [
        {"type": "tool_result", "tool_use_id": u.id, "content": RESULTS[u.name]}  # type: ignore[union-attr]
        for u in uses
    ]
    messages.append({"role": "user", "content": results})
    after = await cell.anthropic.messages.create(
        model=cell.model, max_tokens=256, messages=messages, tools=anthropic_tools()
    )
    assert_tool_results(after.content[0].text)  # type: ignore[union-attr]


async def anthropic_image(cell: Cell) -> None:
    cell.state.scenario = "image_echo"
    image = {"type": "base64", "media_type": "image/png", "data": PNG}
    message = await cell.anthropic.messages.create(
        model=cell.model,
        max_tokens=256,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": image},
                    {"type": "text", "text": "what is this?"},
                ],
            }
        ],
    )

    assert message.content[0].text == SEEN_IMAGE  # type: ignore[union-attr]


async def anthropic_upstream_error(cell: Cell) -> None:
    cell.state.fail_next(429, retry_after=7)

    with pytest.raises(anthropic.RateLimitError) as limited:
        await cell.anthropic.messages.create(
            model=cell.model, max_tokens=256, messages=[{"role": "user", "content": PROMPT}]
        )

    assert limited.value.response.headers["retry-after"] == "7"
    assert cell.provider_name in limited.value.message
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


CASES: Final[dict[str, dict[str, Callable[[Cell], Awaitable[None]]]]] = {
    "OpenAI SDK chat": {
        "plain": openai_plain,
        "stream": openai_stream,
        "tools": openai_tool_calls,
        "image": openai_image,
        "error": openai_upstream_error,
    },
    "Anthropic SDK messages": {
        "plain": anthropic_plain,
        "stream": anthropic_stream,
        "tools": anthropic_tool_calls,
        "image": anthropic_image,
        "error": anthropic_upstream_error,
    },
}


@pytest.mark.parametrize("case", ["plain", "stream", "tools", "image", "error"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("door", list(CASES), ids=["openai-door", "anthropic-door"])
async def test_front_door_reaches_provider(
    conformance_cell: Callable[[str, str, str], None],
    door: str,
    kind: str,
    case: str,
    providers: Providers,
    state: EmulatorState,
    clients: tuple[openai.AsyncOpenAI, anthropic.AsyncAnthropic],
) -> None:
    """A member's SDK call through this front door reaches this provider and comes back whole in the SDK's own types."""
    conformance_cell(door, kind, case)

    await CASES[door][case](Cell(*clients, state=state, providers=providers, kind=kind))
