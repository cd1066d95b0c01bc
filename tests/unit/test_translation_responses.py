"""The Responses door: Responses requests to the hub, chat answers and streams back.

Answers are validated with ``openai.types.responses.Response``; streams are read by the
official OpenAI SDK itself (through an httpx2 MockTransport, no network).
"""

from __future__ import annotations

from typing import Any

import httpx2
import openai
import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from shared.providers import UnsupportedFeature, UpstreamFailure
from shared.providers.sse import SSEParser
from shared.translation import (
    ResponsesStreamEncoder,
    chat_to_responses_response,
    responses_to_chat_request,
)
from tests.unit.provider_contract import PNG

STREAM_EVENT = TypeAdapter(ResponseStreamEvent)
TOOL = {
    "type": "function",
    "name": "shell",
    "description": "Run a command",
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
    "strict": True,
}


def _request(**extra: Any) -> dict[str, Any]:
    return {
        "model": "team/claude",
        "instructions": "You are a coding agent.",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "list files"},
                    {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
                ],
            },
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Running."}]},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "shell",
                "arguments": '{"cmd":"ls"}',
            },
            {
                "type": "function_call",
                "call_id": "call_2",
                "name": "shell",
                "arguments": '{"cmd":"pwd"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "a.py"},
            {"type": "function_call_output", "call_id": "call_2", "output": "/src"},
        ],
        "tools": [TOOL],
        "tool_choice": "auto",
        "max_output_tokens": 300,
        "reasoning": {"effort": "low", "summary": "auto"},
        "text": {
            "format": {
                "type": "json_schema",
                "name": "files",
                "schema": {"type": "object"},
                "strict": True,
            }
        },
        "store": False,
        "include": ["reasoning.encrypted_content"],
        **extra,
    }


def test_an_agent_turn_translates_to_a_chat_request() -> None:
    """Instructions, input items, parallel calls and their outputs map to chat messages in order."""
    chat = responses_to_chat_request(_request(stream=True))

    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "tool", "tool"]
    assert chat["messages"][1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PNG}"},
    }
    assistant = chat["messages"][2]
    assert assistant["content"] == "Running."
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_1", "call_2"]
    assert chat["messages"][4] == {"role": "tool", "tool_call_id": "call_2", "content": "/src"}
    assert chat["tools"][0]["function"]["name"] == "shell"
    assert chat["tools"][0]["function"]["strict"] is True
    assert chat["max_tokens"] == 300
    assert chat["reasoning_effort"] == "low"
    assert chat["response_format"]["json_schema"]["name"] == "files"
    assert chat["stream_options"] == {"include_usage": True}


def test_a_string_input_is_one_user_message() -> None:
    chat = responses_to_chat_request({"model": "m", "input": "hi"})

    assert chat["messages"] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"background": True}, "background"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0]",
        ),
    ],
)
def test_what_the_gateway_cannot_do_is_refused_by_name(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(UnsupportedFeature) as caught:
        responses_to_chat_request({"model": "m", "input": "x", **extra})

    assert caught.value.field == field


def test_a_chat_answer_is_a_valid_response() -> None:
    """Text and tool calls become output items; usage and echoed parameters validate."""
    completion = {
        "id": "chatcmpl-1",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Done.",
                    "tool_calls": [
                        {
                            "id": "call_9",
                            "type": "function",
                            "function": {"name": "shell", "arguments": '{"cmd":"ls"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 4,
            "total_tokens": 13,
            "prompt_tokens_details": {"cached_tokens": 2},
        },
    }

    response = Response.model_validate(
        chat_to_responses_response(completion, _request(), model="team/claude")
    )

    assert response.status == "completed"
    assert response.output_text == "Done."
    assert [item.type for item in response.output] == ["message", "function_call"]
    assert response.output[1].call_id == "call_9"  # type: ignore[union-attr]
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.input_tokens_details.cached_tokens) == (
        9,
        2,
    )


def test_an_answer_cut_by_the_token_limit_is_incomplete() -> None:
    completion = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Part"},
                "finish_reason": "length",
            }
        ]
    }

    response = Response.model_validate(
        chat_to_responses_response(completion, {"model": "m"}, model="m")
    )

    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


def _chunks() -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "x",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    return [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Listing "}),
        chunk({"content": "files."}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "shell", "arguments": '{"cmd"'},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ':"ls"}'}}]}),
        chunk({}, "tool_calls"),
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "x",
            "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        },
    ]


def _sdk_client(body: bytes) -> openai.AsyncOpenAI:
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    return openai.AsyncOpenAI(
        api_key="gateway-token",
        base_url="http://gateway.test/v1",
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(answer)),
        max_retries=0,
    )


async def test_the_openai_sdk_reads_an_encoded_stream_to_the_final_response() -> None:
    """Every event validates, sequence numbers rise, and the SDK rebuilds text and call."""
    encoder = ResponsesStreamEncoder(_request(), model="team/claude")
    body = b"".join(encoder.feed(c) for c in _chunks()) + encoder.finish()
    events = [STREAM_EVENT.validate_python(orjson.loads(e.data)) for e in SSEParser().feed(body)]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"

    client = _sdk_client(body)
    async with client.responses.stream(model="team/claude", input="list files") as stream:
        final = await stream.get_final_response()

    assert final.output_text == "Listing files."
    call = final.output[1]
    assert call.type == "function_call"
    assert (call.name, call.arguments) == ("shell", '{"cmd":"ls"}')
    assert final.usage is not None
    assert final.usage.total_tokens == 8


async def test_a_failure_midway_sends_an_error_then_response_failed() -> None:
    encoder = ResponsesStreamEncoder({"model": "m"}, model="m")
    failure = UpstreamFailure(
        "slow down", provider="groq", status=429, category="rate_limited", retry_after="3"
    )
    body = b"".join(encoder.feed(c) for c in _chunks()[:2]) + encoder.fail(failure)

    events = [STREAM_EVENT.validate_python(orjson.loads(e.data)) for e in SSEParser().feed(body)]

    assert [e.type for e in events[-2:]] == ["error", "response.failed"]
    assert events[-1].response.error is not None  # type: ignore[union-attr]
    assert events[-1].response.error.code == "rate_limit_exceeded"  # type: ignore[union-attr]
    client = _sdk_client(body)
    seen = [
        event async for event in await client.responses.create(model="m", input="x", stream=True)
    ]
    assert [type(e).__name__ for e in seen[-2:]] == ["ResponseErrorEvent", "ResponseFailedEvent"]
    assert "groq" in seen[-2].message  # type: ignore[union-attr]
