"""The Gemini adapter meets the provider contract, and speaks the Gemini API as documented."""

from __future__ import annotations

import httpx
import orjson
import pytest

from shared.providers import Endpoint, KeyRejected, UnsupportedFeature, adapter_for
from shared.providers.google_wire import generate_request
from shared.secrets import ProviderKey
from tests.emulator import EmulatorState, provider_base_url, running_emulator
from tests.unit.provider_contract import PNG, WEATHER, ProviderContract, new_key


class TestGoogleContract(ProviderContract):
    kind = "google"
    key_header = "x-goog-api-key"


def test_chat_and_stream_urls_name_the_model_and_method() -> None:
    """generateContent for a plain call, streamGenerateContent with alt=sse for a stream."""
    adapter = adapter_for("google")
    endpoint = Endpoint("google", "http://127.0.0.1:9/v1beta")
    key = new_key()

    plain = adapter.chat_request(endpoint, ProviderKey(key), {"model": "gemini-x", "messages": []})
    streamed = adapter.chat_request(
        endpoint, ProviderKey(key), {"model": "models/gemini-x", "messages": [], "stream": True}
    )

    assert plain.url == "http://127.0.0.1:9/v1beta/models/gemini-x:generateContent"
    assert streamed.url == "http://127.0.0.1:9/v1beta/models/gemini-x:streamGenerateContent?alt=sse"
    assert plain.headers["x-goog-api-key"] == key
    assert "Authorization" not in plain.headers


def test_request_translation_covers_system_tools_results_and_config() -> None:
    """System text, function declarations, named tool results and generation config map to Gemini's."""
    body = generate_request(
        {
            "model": "gemini-x",
            "messages": [
                {"role": "system", "content": "be brief"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "hi"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "rain"},
            ],
            "tools": [WEATHER],
            "tool_choice": "required",
            "max_tokens": 20,
            "temperature": 0.2,
            "stop": ["END"],
            "n": 2,
            "response_format": {"type": "json_object"},
        }
    )

    assert body["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert body["contents"] == [
        {
            "role": "user",
            "parts": [{"text": "hi"}, {"inlineData": {"mimeType": "image/png", "data": PNG}}],
        },
        {
            "role": "model",
            "parts": [
                {"functionCall": {"id": "c1", "name": "get_weather", "args": {"city": "Oslo"}}}
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "id": "c1",
                        "name": "get_weather",
                        "response": {"result": "rain"},
                    }
                }
            ],
        },
    ]
    assert (
        body["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]
        == WEATHER["function"]["parameters"]
    )
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert body["generationConfig"] == {
        "temperature": 0.2,
        "candidateCount": 2,
        "maxOutputTokens": 20,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
    }


def test_a_tool_result_for_an_unknown_call_is_refused() -> None:
    """Gemini needs the function name, which only the earlier call can give."""
    with pytest.raises(UnsupportedFeature) as caught:
        generate_request(
            {"model": "g", "messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}
        )

    assert caught.value.field == "messages[0].tool_call_id"


def test_logprobs_are_refused_by_name() -> None:
    with pytest.raises(UnsupportedFeature) as caught:
        generate_request({"model": "g", "messages": [], "logprobs": True})

    assert caught.value.field == "logprobs"


async def test_a_bad_key_answered_400_api_key_invalid_is_a_rejected_key() -> None:
    """Google refuses keys with 400 INVALID_ARGUMENT/API_KEY_INVALID, which is not a bad URL."""
    state = EmulatorState(keys={new_key()})
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        endpoint = Endpoint("google", provider_base_url(base_url, "google"))
        with pytest.raises(KeyRejected) as caught:
            await adapter_for("google").verify_key(client, endpoint, ProviderKey(new_key()))

    assert caught.value.status == 400


async def test_listing_follows_page_tokens_and_leaves_out_models_that_cannot_chat() -> None:
    """nextPageToken is followed to the end; embedding-only models are not listed."""
    key = new_key()
    state = EmulatorState(
        keys={key},
        models=["gemini-a", "gemini-b", "gemini-c"],
        page_size=2,
        embedding_models=["embedding-1"],
    )
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        endpoint = Endpoint("google", provider_base_url(base_url, "google"))
        listed = await adapter_for("google").list_models(client, endpoint, ProviderKey(key))

    assert [m.id for m in listed] == ["gemini-a", "gemini-b", "gemini-c"]
    assert [r.query.get("pageToken") for r in state.requests] == [None, "page-2"]


async def test_rate_limit_retry_delay_in_the_body_becomes_retry_after() -> None:
    """Google states the retry delay in a RetryInfo detail; it is kept as Retry-After."""
    key = new_key()
    state = EmulatorState(keys={key}, models=["gemini-a"])
    state.fail_next(429, retry_after=12)
    adapter = adapter_for("google")
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        endpoint = Endpoint("google", provider_base_url(base_url, "google"))
        request = adapter.chat_request(
            endpoint,
            ProviderKey(key),
            {"model": "gemini-a", "messages": [{"role": "user", "content": "x"}]},
        )
        response = await client.post(request.url, headers=request.headers, content=request.body)

    failure = adapter.error_from_response(
        response.status_code, response.content, response.headers, ProviderKey(key)
    )
    assert "retry-after" not in response.headers
    assert (failure.category, failure.retry_after) == ("rate_limited", "12")


def test_a_blocked_prompt_finishes_as_content_filter() -> None:
    """An answer with promptFeedback and no candidate is a content_filter finish."""
    payload = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 3},
    }

    completion = adapter_for("google").response_to_openai(orjson.dumps(payload), model="g")

    assert completion["choices"][0]["finish_reason"] == "content_filter"
    assert completion["usage"]["prompt_tokens"] == 3
