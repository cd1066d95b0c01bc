"""The OpenAI and OpenAI-compatible adapters meet the provider contract, plus their own rules."""

from __future__ import annotations

import orjson
import pytest

from shared.providers import Endpoint, adapter_for
from shared.secrets import ProviderKey
from tests.unit.provider_contract import ProviderContract, new_key


class TestOpenAIContract(ProviderContract):
    kind = "openai"


class TestOpenAICompatibleContract(ProviderContract):
    kind = "openai-compatible"


def test_openai_sends_max_completion_tokens_for_max_tokens() -> None:
    """OpenAI's reasoning models refuse max_tokens, so the openai kind renames it."""
    body = {"model": "m", "messages": [], "max_tokens": 9}
    endpoint = Endpoint("openai", "http://127.0.0.1:9/v1")

    sent = orjson.loads(
        adapter_for("openai").chat_request(endpoint, ProviderKey(new_key()), body).body
    )
    kept = orjson.loads(
        adapter_for("openai-compatible").chat_request(endpoint, ProviderKey(new_key()), body).body
    )

    assert sent == {"model": "m", "messages": [], "max_completion_tokens": 9}
    assert kept == body


def test_native_requests_pass_the_body_through_untouched() -> None:
    """Pass-through doors keep the client's bytes and use the door's path."""
    key = new_key()
    adapter = adapter_for("openai")
    endpoint = Endpoint("openai", "http://127.0.0.1:9/v1/")
    body = b'{"model":"m","input":"hi"}'

    request = adapter.native_request(
        endpoint, ProviderKey(key), "openai-responses", body, {"x-other": "1"}
    )

    assert request.url == "http://127.0.0.1:9/v1/responses"
    assert request.body == body
    assert request.headers == {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    assert adapter.native_doors == {"openai-chat", "openai-responses", "openai-embeddings"}
    with pytest.raises(LookupError):
        adapter.native_request(endpoint, ProviderKey(key), "anthropic-messages", body, {})


def test_compatible_servers_are_not_assumed_to_speak_responses() -> None:
    """A vLLM or Ollama server is passed chat and embeddings, never the Responses API."""
    assert adapter_for("openai-compatible").native_doors == {"openai-chat", "openai-embeddings"}


def test_usage_of_a_native_responses_answer_and_its_completed_event() -> None:
    """Responses usage (input/output tokens) is read for pass-through accounting."""
    usage = {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 4},
        "output_tokens": 6,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 16,
    }
    adapter = adapter_for("openai")

    plain = adapter.usage_from_response({"object": "response", "usage": usage})
    event = adapter.usage_from_stream_event(
        {"type": "response.completed", "response": {"usage": usage}}
    )

    assert plain == event
    assert plain is not None
    assert (plain.input_tokens, plain.cached_input_tokens, plain.reasoning_tokens) == (10, 4, 2)


def test_an_error_event_in_a_stream_is_a_failure_with_its_status() -> None:
    """OpenRouter-style {"error": {"code": 502}} midway ends the stream with that status."""
    key = new_key()
    decoder = adapter_for("openai-compatible").stream_decoder(model="m", key=ProviderKey(key))
    first = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
    error = (
        b'data: {"error": {"code": 502, "message": "upstream broke with '
        + key.encode()
        + b'"}}\n\n'
    )

    chunks = decoder.feed(first + error)

    assert len(chunks) == 1
    assert decoder.failure is not None
    assert decoder.failure.status == 502
    assert key[:12] not in decoder.failure.message
