"""The Anthropic front door: Messages requests to the hub, hub answers and streams back.

Shapes are checked with the official SDKs: requests against the anthropic SDK's request
types, answers with ``anthropic.types.Message``, and streams by letting the anthropic SDK
itself read the encoded bytes (through an httpx MockTransport, no network).
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import orjson
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming
from pydantic import TypeAdapter

from shared.providers import UnsupportedFeature, UpstreamFailure
from shared.providers.anthropic_wire import STOP_TO_FINISH, messages_request
from shared.providers.bedrock_wire import converse_request
from shared.providers.sse import SSEParser
from shared.translation import (
    AnthropicStreamEncoder,
    anthropic_field,
    anthropic_to_openai_request,
    estimate_input_tokens,
    openai_to_anthropic_response,
)
from shared.translation.anthropic_response import FINISH_TO_STOP
from tests.unit.provider_contract import PNG

ANTHROPIC_REQUEST = TypeAdapter(MessageCreateParamsNonStreaming)
OPENAI_REQUEST = TypeAdapter(CompletionCreateParamsNonStreaming)
STREAM_EVENT = TypeAdapter(RawMessageStreamEvent)

WEATHER = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def _conversation() -> dict[str, Any]:
    """A Claude Code-like request: system blocks, images, two parallel tool calls, their results."""
    return {
        "model": "team/gpt",
        "max_tokens": 1024,
        "system": [
            {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Use tools."},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather in Paris and Rome?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://img.example.test/a.jpg"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "two calls", "signature": "sig"},
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {
                        "type": "tool_use",
                        "id": "toolu_2",
                        "name": "get_weather",
                        "input": {"city": "Rome"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "is_error": True,
                        "content": [{"type": "text", "text": "no data"}],
                    },
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        "tools": [WEATHER],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["END"],
        "temperature": 0.3,
        "top_p": 0.8,
        "metadata": {"user_id": "member-7"},
    }


def test_a_full_conversation_translates_to_a_valid_openai_request() -> None:
    """System blocks, images, parallel tool calls and results map to OpenAI chat in order."""
    request = _conversation()
    ANTHROPIC_REQUEST.validate_python(request)

    chat = anthropic_to_openai_request(request)

    OPENAI_REQUEST.validate_python(chat)
    assert [m["role"] for m in chat["messages"]] == [
        "system",
        "user",
        "assistant",
        "tool",
        "tool",
        "user",
    ]
    assert chat["messages"][0] == {"role": "system", "content": "You are terse.\nUse tools."}
    assert chat["messages"][1]["content"] == [
        {"type": "text", "text": "Weather in Paris and Rome?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://img.example.test/a.jpg"}},
    ]
    assistant = chat["messages"][2]
    assert assistant["content"] == "Checking."
    assert [
        (c["id"], orjson.loads(c["function"]["arguments"])) for c in assistant["tool_calls"]
    ] == [
        ("toolu_1", {"city": "Paris"}),
        ("toolu_2", {"city": "Rome"}),
    ]
    assert chat["messages"][3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}
    assert chat["messages"][4]["content"] == "[error] no data"
    assert chat["messages"][5] == {"role": "user", "content": "And tomorrow?"}
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": WEATHER["input_schema"],
            },
        }
    ]
    assert (chat["tool_choice"], chat["parallel_tool_calls"]) == ("required", False)
    assert (chat["stop"], chat["temperature"], chat["top_p"], chat["max_tokens"]) == (
        ["END"],
        0.3,
        0.8,
        1024,
    )
    assert chat["user"] == "member-7"


def test_a_round_trip_through_the_hub_to_anthropic_keeps_the_conversation() -> None:
    """Anthropic request -> OpenAI hub -> Anthropic adapter gives back the same turns and tools."""
    original = _conversation()

    back = messages_request(anthropic_to_openai_request(original))

    ANTHROPIC_REQUEST.validate_python(back)
    assert back["system"] == [{"type": "text", "text": "You are terse.\nUse tools."}]
    assert back["messages"][1]["content"][1:] == original["messages"][1]["content"][2:]
    assert [b["type"] for b in back["messages"][2]["content"]] == [
        "tool_result",
        "tool_result",
        "text",
    ]
    assert back["tools"] == [WEATHER]
    assert back["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert (back["stop_sequences"], back["max_tokens"], back["metadata"]) == (
        ["END"],
        1024,
        {"user_id": "member-7"},
    )


def test_a_string_system_and_stream_ask_for_usage() -> None:
    """A string system prompt stays a string; a stream asks the provider for its usage chunk."""
    chat = anthropic_to_openai_request(
        {
            "model": "m",
            "max_tokens": 5,
            "system": "be kind",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
        }
    )

    assert chat["messages"] == [
        {"role": "system", "content": "be kind"},
        {"role": "user", "content": "hi"},
    ]
    assert chat["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        (
            {"type": "tool", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_tool_choice_maps_each_way(choice: dict[str, Any], expected: object) -> None:
    chat = anthropic_to_openai_request(
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}],
            "tools": [WEATHER],
            "tool_choice": choice,
        }
    )

    assert chat["tool_choice"] == expected


def test_thinking_and_structured_output_map_to_effort_and_json_schema() -> None:
    chat = anthropic_to_openai_request(
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}],
            "thinking": {"type": "enabled", "budget_tokens": 4000},
            "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
        }
    )

    assert chat["reasoning_effort"] == "medium"
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": {"type": "object"}},
    }


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"top_k": 5}, "top_k"),
        (
            {"mcp_servers": [{"type": "url", "url": "https://mcp.example.test", "name": "x"}]},
            "mcp_servers",
        ),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0]"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ]
            },
            "messages[0].content[0].source",
        ),
    ],
)
def test_what_other_providers_cannot_do_is_refused_by_name(
    extra: dict[str, Any], field: str
) -> None:
    request = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
        **extra,
    }

    with pytest.raises(UnsupportedFeature) as caught:
        anthropic_to_openai_request(request)

    assert caught.value.field == field


def test_a_refusal_by_the_target_names_the_callers_own_field() -> None:
    """Thinking sent to a provider that cannot reason is refused as 'thinking', not the hub's name."""
    chat = anthropic_to_openai_request(
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}],
            "thinking": {"type": "enabled", "budget_tokens": 1024},
        }
    )
    with pytest.raises(UnsupportedFeature) as caught:
        converse_request(chat)

    assert anthropic_field(caught.value.field) == "thinking"
    assert anthropic_field("stop") == "stop_sequences"
    assert anthropic_field("messages[2].content[0]") == "messages[2].content[0]"


def test_tool_choice_without_tools_is_left_out() -> None:
    chat = anthropic_to_openai_request(
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}],
            "tool_choice": {"type": "auto"},
        }
    )

    assert "tool_choice" not in chat


def test_images_inside_tool_results_follow_the_tool_messages() -> None:
    """OpenAI tool messages hold text only: a result's image follows them in a user message."""
    chat = anthropic_to_openai_request(
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t",
                            "content": [
                                {"type": "text", "text": "screenshot"},
                                {
                                    "type": "image",
                                    "source": {
                                        "type": "base64",
                                        "media_type": "image/png",
                                        "data": PNG,
                                    },
                                },
                            ],
                        }
                    ],
                }
            ],
        }
    )

    assert [m["role"] for m in chat["messages"]] == ["tool", "user"]
    assert chat["messages"][1]["content"][0]["type"] == "image_url"


def _completion(**message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-x",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", **message},
                "finish_reason": message.pop("finish", "stop"),
            }
        ],
        "usage": {
            "prompt_tokens": 20,
            "completion_tokens": 7,
            "total_tokens": 27,
            "prompt_tokens_details": {"cached_tokens": 15},
        },
    }


def test_an_openai_answer_with_tool_calls_is_a_valid_anthropic_message() -> None:
    """Text and parallel tool calls become blocks; cached tokens move to cache_read_input_tokens."""
    completion = _completion(
        content="Let me check.",
        tool_calls=[
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_weather", "arguments": "not json"},
            },
        ],
    )
    completion["choices"][0]["finish_reason"] = "tool_calls"

    message = Message.model_validate(openai_to_anthropic_response(completion, model="team/gpt"))

    assert message.model == "team/gpt"
    assert message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[1].input == {"city": "Oslo"}  # type: ignore[union-attr]
    assert message.content[2].input == {"_raw_arguments": "not json"}  # type: ignore[union-attr]
    assert (
        message.usage.input_tokens,
        message.usage.cache_read_input_tokens,
        message.usage.output_tokens,
    ) == (5, 15, 7)


def test_stop_and_finish_reasons_map_both_ways() -> None:
    """The reasons that exist on both sides survive a round trip."""
    assert FINISH_TO_STOP == {
        "stop": "end_turn",
        "length": "max_tokens",
        "tool_calls": "tool_use",
        "function_call": "tool_use",
        "content_filter": "refusal",
    }
    for finish in ("stop", "length", "tool_calls", "content_filter"):
        assert STOP_TO_FINISH[FINISH_TO_STOP[finish]] == finish


def _chunks() -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-9",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-x",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    return [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Checking "}),
        chunk({"content": "both."}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"ci'},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Paris"}'}}]}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"city":"Rome"}'}}]}),
        chunk({}, "tool_calls"),
        {
            "id": "chatcmpl-9",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-x",
            "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
        },
    ]


def _sdk_client(body: bytes) -> anthropic.AsyncAnthropic:
    # The SDKs ship their own HTTP client package (httpx2); its MockTransport serves them.
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    transport = httpx2.MockTransport(answer)
    return anthropic.AsyncAnthropic(
        api_key="gateway-token",
        base_url="http://gateway.test",
        http_client=httpx2.AsyncClient(transport=transport),
        max_retries=0,
    )


async def test_the_anthropic_sdk_reads_an_encoded_stream_as_the_whole_message() -> None:
    """Text deltas and tool arguments split across chunks rebuild, in the SDK, into one Message."""
    encoder = AnthropicStreamEncoder(model="team/gpt", input_tokens=11)
    body = b"".join(encoder.feed(c) for c in _chunks()) + encoder.finish()
    for event in SSEParser().feed(body):
        # ping is documented but not one of the SDK's typed events.
        if event.event != "ping":
            STREAM_EVENT.validate_python(orjson.loads(event.data))

    client = _sdk_client(body)
    async with client.messages.stream(
        model="team/gpt", max_tokens=100, messages=[{"role": "user", "content": "x"}]
    ) as stream:
        message = await stream.get_final_message()

    assert message.model == "team/gpt"
    assert message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[0].text == "Checking both."  # type: ignore[union-attr]
    assert message.content[1].input == {"city": "Paris"}  # type: ignore[union-attr]
    assert message.content[2].input == {"city": "Rome"}  # type: ignore[union-attr]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 9)


async def test_a_failure_midway_ends_the_stream_with_an_error_event_the_sdk_raises() -> None:
    """After some text, an upstream failure becomes Anthropic's error event; the SDK raises it."""
    encoder = AnthropicStreamEncoder(model="team/gpt")
    failure = UpstreamFailure("overloaded", provider="google", status=503, category="overloaded")
    body = b"".join(encoder.feed(c) for c in _chunks()[:3]) + encoder.fail(failure, "team-gemini")

    events = SSEParser().feed(body)
    assert events[-1].event == "error"
    error = orjson.loads(events[-1].data)
    assert error["error"]["type"] == "overloaded_error"
    assert "team-gemini" in error["error"]["message"]
    assert encoder.finish() == b""

    client = _sdk_client(body)
    with pytest.raises(anthropic.APIStatusError):
        async with client.messages.stream(
            model="team/gpt", max_tokens=100, messages=[{"role": "user", "content": "x"}]
        ) as stream:
            await stream.get_final_message()


def test_an_empty_answer_still_makes_a_well_formed_stream() -> None:
    """A stream with no chunk at all still starts and stops the message."""
    encoder = AnthropicStreamEncoder(model="m")

    names = [e.event for e in SSEParser().feed(encoder.finish())]

    assert names == ["message_start", "ping", "message_delta", "message_stop"]


def test_count_tokens_estimate_grows_with_text_images_and_tools() -> None:
    """The estimate is documented as one; it counts text, images and tool schemas."""
    text_only = {"messages": [{"role": "user", "content": "word " * 100}]}
    with_image = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "word " * 100},
                    {"type": "image", "source": {}},
                ],
            }
        ]
    }
    with_tool = {**text_only, "tools": [WEATHER], "system": "be brief"}

    base = estimate_input_tokens(text_only)

    assert 120 <= base <= 135
    assert estimate_input_tokens(with_image) == base + 1600
    assert estimate_input_tokens(with_tool) > base
