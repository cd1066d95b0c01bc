"""The emulator's Responses and Embeddings routes, read by the official openai SDK."""

from __future__ import annotations

import json
import secrets

import openai

from tests.emulator import EmulatorState, running_emulator


def _key() -> str:
    return f"sk-test-{secrets.token_urlsafe(24)}"


async def test_the_openai_sdk_reads_emulated_responses_plain_and_streamed() -> None:
    """A Response and its event stream parse in the SDK, text, usage and function calls included."""
    key, model = _key(), "gpt-emulated"
    state = EmulatorState(keys={key}, models=[model])
    tool: dict[str, object] = {
        "type": "function",
        "name": "lookup",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    }
    async with (
        running_emulator(state) as base_url,
        openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0) as sdk,
    ):
        plain = await sdk.responses.create(model=model, input="hi there")
        stream = await sdk.responses.create(model=model, input="hi there", stream=True)
        events = [event async for event in stream]
        state.scenario = "tool_call"
        called = await sdk.responses.create(model=model, input="look", tools=[tool])  # type: ignore[list-item]

    assert plain.output_text == "Hello from gpt-emulated: hi there"
    assert plain.usage is not None and plain.usage.input_tokens == 2
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == plain.output_text
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"
    [call] = called.output
    assert call.type == "function_call" and json.loads(call.arguments) == {"q": "emulated"}


async def test_the_openai_sdk_reads_emulated_embeddings_as_floats_and_base64() -> None:
    """Embeddings come back as the SDK expects, whichever encoding it asks for."""
    key, model = _key(), "embed-emulated"
    state = EmulatorState(keys={key}, models=[model])
    async with (
        running_emulator(state) as base_url,
        openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0) as sdk,
    ):
        default = await sdk.embeddings.create(model=model, input=["a b", "c"])
        floats = await sdk.embeddings.create(model=model, input="a b", encoding_format="float")

    assert [len(item.embedding) for item in default.data] == [8, 8]
    assert floats.data[0].embedding == default.data[0].embedding
    assert default.usage.prompt_tokens == 3
    assert state.requests[0].json["encoding_format"] == "base64"
