"""The emulator's provider dialects, checked with the official SDKs over real HTTP on loopback."""

from __future__ import annotations

import secrets

import anthropic
import httpx
import openai

from tests.emulator import EmulatorState, provider_base_url, running_emulator


def _key() -> str:
    return f"sk-test-{secrets.token_urlsafe(24)}"


async def test_the_anthropic_sdk_reads_the_emulated_messages_api() -> None:
    """Plain and streamed tool-call answers parse in the anthropic SDK as Anthropic's would."""
    key, model = _key(), "claude-emulated"
    state = EmulatorState(keys={key}, models=[model], scenario="tool_call")
    tool = {
        "name": "get_weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    async with running_emulator(state) as base_url:
        sdk = anthropic.AsyncAnthropic(
            api_key=key,
            base_url=provider_base_url(base_url, "anthropic").removesuffix("/v1"),
            max_retries=0,
        )
        plain = await sdk.messages.create(
            model=model, max_tokens=50, messages=[{"role": "user", "content": "hi"}], tools=[tool]
        )  # type: ignore[list-item]
        async with sdk.messages.stream(
            model=model, max_tokens=50, messages=[{"role": "user", "content": "hi"}], tools=[tool]
        ) as stream:  # type: ignore[list-item]
            streamed = await stream.get_final_message()
        count = await sdk.messages.count_tokens(
            model=model, messages=[{"role": "user", "content": "a b c"}]
        )
        await sdk.close()

    assert plain.stop_reason == streamed.stop_reason == "tool_use"
    assert plain.content[0].input == streamed.content[0].input == {"city": "emulated"}  # type: ignore[union-attr]
    assert count.input_tokens == 3
    # The 2.x SDKs send the key as a bearer token and the 2026-10-21 API version.
    assert state.requests[0].bearer == key
    assert state.requests[0].headers["anthropic-version"] == "2026-10-21"


async def test_the_openai_sdk_reads_emulated_tool_calls_streamed_in_pieces() -> None:
    key, model = _key(), "gpt-emulated"
    state = EmulatorState(keys={key}, models=[model], scenario="tool_call")
    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}},
        },
    }
    async with running_emulator(state) as base_url:
        sdk = openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0)
        async with sdk.chat.completions.stream(
            model=model, messages=[{"role": "user", "content": "go"}], tools=[tool]
        ) as stream:  # type: ignore[list-item]
            final = await stream.get_final_completion()
        await sdk.close()

    call = final.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert (call.function.name, call.function.arguments) == ("f", '{"n":1}')  # type: ignore[union-attr]


async def test_scenario_is_chosen_over_the_control_route() -> None:
    state = EmulatorState(keys={_key()})
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        root = base_url.removesuffix("/v1")
        chosen = await client.put(f"{root}/_emulator/scenario", json={"scenario": "image_echo"})
        refused = await client.put(f"{root}/_emulator/scenario", json={"scenario": "nope"})

    assert chosen.json() == {"scenario": "image_echo"}
    assert refused.status_code == 400
    assert state.scenario == "image_echo"


async def test_anthropic_routes_insist_on_a_version_and_max_tokens() -> None:
    key, model = _key(), "claude-emulated"
    state = EmulatorState(keys={key}, models=[model])
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        url = provider_base_url(base_url, "anthropic") + "/messages"
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        no_version = await client.post(
            url, headers={"x-api-key": key}, json={**body, "max_tokens": 5}
        )
        no_max = await client.post(
            url, headers={"x-api-key": key, "anthropic-version": "2023-06-01"}, json=body
        )

    assert no_version.status_code == no_max.status_code == 400
    assert no_version.json()["error"]["type"] == "invalid_request_error"


async def test_api_version_2026_10_21_refuses_sampling_parameters() -> None:
    """As documented for that version; 2023-06-01 still takes temperature."""
    key, model = _key(), "claude-emulated"
    state = EmulatorState(keys={key}, models=[model])
    body = {
        "model": model,
        "max_tokens": 5,
        "temperature": 0.2,
        "messages": [{"role": "user", "content": "hi"}],
    }
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        url = provider_base_url(base_url, "anthropic") + "/messages"
        new = await client.post(
            url, headers={"x-api-key": key, "anthropic-version": "2026-10-21"}, json=body
        )
        old = await client.post(
            url, headers={"x-api-key": key, "anthropic-version": "2023-06-01"}, json=body
        )

    assert new.status_code == 400
    assert "temperature" in new.json()["error"]["message"]
    assert old.status_code == 200
