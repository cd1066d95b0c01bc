"""The Anthropic adapter meets the provider contract, and speaks the Messages API as documented."""

from __future__ import annotations

from typing import Any

import anthropic.types
import httpx
import orjson
import pytest

from shared.providers import Endpoint, UnsupportedFeature, Usage, adapter_for
from shared.providers.anthropic import ANTHROPIC_VERSION, AnthropicAdapter
from shared.providers.anthropic_wire import DEFAULT_MAX_TOKENS, messages_request
from shared.secrets import ProviderKey
from tests.emulator import EmulatorState, provider_base_url, running_emulator
from tests.unit.provider_contract import PNG, TIME, WEATHER, ProviderContract, new_key


class TestAnthropicContract(ProviderContract):
    kind = "anthropic"
    key_header = "x-api-key"


def _translate(**body: Any) -> dict[str, Any]:
    return messages_request(
        {"model": "claude-x", "messages": [{"role": "user", "content": "hi"}], **body}
    )


def test_requests_carry_the_key_and_version_headers() -> None:
    """Chat requests use x-api-key and anthropic-version, never a bearer header."""
    key = new_key()
    request = adapter_for("anthropic").chat_request(
        Endpoint("anthropic", "http://127.0.0.1:9/v1"),
        ProviderKey(key),
        {"model": "m", "messages": [], "stream": True},
    )

    assert request.url == "http://127.0.0.1:9/v1/messages"
    assert request.headers["x-api-key"] == key
    assert request.headers["anthropic-version"] == ANTHROPIC_VERSION
    assert request.headers["Accept"] == "text/event-stream"
    assert "Authorization" not in request.headers


def test_max_tokens_defaults_when_the_openai_body_has_none() -> None:
    """Anthropic requires max_tokens: a body without it gets the documented default."""
    assert _translate()["max_tokens"] == DEFAULT_MAX_TOKENS == 4096
    assert _translate(max_completion_tokens=77)["max_tokens"] == 77
    assert _translate(max_tokens=12)["max_tokens"] == 12


def test_system_messages_tools_choice_and_sampling_translate() -> None:
    """System prompts, tool definitions, tool_choice, stop and sampling map to Anthropic's fields."""
    body = messages_request(
        {
            "model": "claude-x",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "use tools"}]},
                {"role": "user", "content": "hi"},
            ],
            "tools": [WEATHER, TIME],
            "tool_choice": {"type": "function", "function": {"name": "get_time"}},
            "parallel_tool_calls": False,
            "stop": "END",
            "temperature": 0.5,
            "top_p": 0.9,
            "user": "member-1",
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "object"}},
            },
        }
    )

    assert body["system"] == [
        {"type": "text", "text": "be brief"},
        {"type": "text", "text": "use tools"},
    ]
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert body["tools"][0] == {
        "name": "get_weather",
        "description": "The weather in a city.",
        "input_schema": WEATHER["function"]["parameters"],
    }
    assert body["tool_choice"] == {
        "type": "tool",
        "name": "get_time",
        "disable_parallel_tool_use": True,
    }
    assert body["stop_sequences"] == ["END"]
    assert (body["temperature"], body["top_p"]) == (0.5, 0.9)
    assert body["metadata"] == {"user_id": "member-1"}
    assert body["output_config"] == {
        "format": {"type": "json_schema", "schema": {"type": "object"}}
    }


def test_parallel_tool_calls_and_results_become_blocks_in_alternating_turns() -> None:
    """Two calls are two tool_use blocks; their two results share one user turn, first."""
    body = messages_request(
        {
            "model": "claude-x",
            "messages": [
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "content": "calling",
                    "tool_calls": [
                        {
                            "id": "a",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"x": 1}'},
                        },
                        {"id": "b", "type": "function", "function": {"name": "g", "arguments": ""}},
                    ],
                },
                {"role": "tool", "tool_call_id": "a", "content": "one"},
                {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "two"}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
                    ],
                },
            ],
        }
    )

    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "calling"},
        {"type": "tool_use", "id": "a", "name": "f", "input": {"x": 1}},
        {"type": "tool_use", "id": "b", "name": "g", "input": {}},
    ]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "a", "content": "one"},
        {"type": "tool_result", "tool_use_id": "b", "content": "two"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n", 2),
        ("logprobs", True),
        ("temperature", 1.5),
        ("seed", 3),
        ("presence_penalty", 0.5),
        ("audio", {"voice": "x"}),
    ],
)
def test_what_anthropic_cannot_do_is_refused_by_name(field: str, value: Any) -> None:
    """Fields Anthropic cannot honour raise UnsupportedFeature naming them."""
    with pytest.raises(UnsupportedFeature) as caught:
        _translate(**{field: value})

    assert caught.value.field == field


def test_json_object_format_is_refused_but_neutral_values_pass() -> None:
    """json_object has no Anthropic equivalent; n=1 and logprobs=false ask for nothing."""
    with pytest.raises(UnsupportedFeature, match="json_schema"):
        _translate(response_format={"type": "json_object"})

    assert _translate(n=1, logprobs=False, presence_penalty=0)["model"] == "claude-x"


def test_answers_validate_as_the_sdk_message_type() -> None:
    """The emulator's Messages answer is what the official SDK parses, and it converts back."""
    from tests.emulator.anthropic_routes import message
    from tests.emulator.scenarios import Answer, ToolCall

    answer = Answer("hi", (ToolCall("c", "f", {"a": 1}),), "tool_calls", 9, 4, 2, 1)
    wire = message("claude-x", answer)
    anthropic.types.Message.model_validate(wire)

    completion = AnthropicAdapter().response_to_openai(orjson.dumps(wire), model="claude-x")

    assert completion["choices"][0]["finish_reason"] == "tool_calls"
    assert completion["usage"]["prompt_tokens"] == 9
    assert completion["usage"]["prompt_tokens_details"]["cached_tokens"] == 2


async def test_pass_through_keeps_the_clients_version_and_beta_headers() -> None:
    """A native Messages request reaches Anthropic with the client's anthropic-* headers only."""
    key, model = new_key(), "claude-pass"
    state = EmulatorState(keys={key}, models=[model])
    body = orjson.dumps(
        {"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    )
    headers = {"anthropic-version": "2023-06-01", "anthropic-beta": "tools-2099", "cookie": "no"}
    adapter = adapter_for("anthropic")
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        endpoint = Endpoint("anthropic", provider_base_url(base_url, "anthropic"))
        request = adapter.native_request(
            endpoint, ProviderKey(key), "anthropic-messages", body, headers
        )
        answer = await client.post(request.url, headers=request.headers, content=request.body)
        count = adapter.native_request(
            endpoint, ProviderKey(key), "anthropic-count-tokens", body, headers
        )
        counted = await client.post(count.url, headers=count.headers, content=count.body)

    seen = state.requests[0].headers
    assert answer.status_code == 200
    assert (seen["anthropic-beta"], seen["anthropic-version"]) == ("tools-2099", "2023-06-01")
    assert "cookie" not in seen
    assert adapter.usage_from_response(answer.json()) == Usage(input_tokens=1, output_tokens=4)
    assert isinstance(adapter, AnthropicAdapter)
    assert adapter.tokens_from_count_response(counted.content) == 1


def test_native_stream_usage_is_read_from_start_and_delta_events() -> None:
    """message_start holds input tokens, message_delta the running output: merged they are the call."""
    adapter = adapter_for("anthropic")
    start = {
        "type": "message_start",
        "message": {
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 1}
        },
    }
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"output_tokens": 7},
    }

    first = adapter.usage_from_stream_event(start)
    assert first is not None
    merged = first.merged(adapter.usage_from_stream_event(delta))

    assert merged == Usage(input_tokens=15, output_tokens=7, cached_input_tokens=5)


async def test_listing_pages_with_after_id() -> None:
    """Pages are fetched with after_id set to the previous page's last_id."""
    key = new_key()
    models = ["claude-a", "claude-b", "claude-c"]
    state = EmulatorState(keys={key}, models=models, page_size=2)
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        endpoint = Endpoint("anthropic", provider_base_url(base_url, "anthropic"))
        listed = await adapter_for("anthropic").list_models(client, endpoint, ProviderKey(key))

    assert [m.id for m in listed] == models
    assert [r.query.get("after_id") for r in state.requests] == [None, "claude-b"]
    assert listed[0].owned_by == "anthropic"
    assert listed[0].created == state.created
