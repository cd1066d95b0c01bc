"""One contract every provider adapter meets, run against the emulator over real HTTP.

Each ``tests/unit/test_provider_<kind>.py`` subclasses :class:`ProviderContract` with its
kind; the same checks then run against that provider's wire format: the key check, the
paged listing, plain and streamed chat, tools (parallel, arguments split across chunks, a
round trip of results), images, upstream errors and a failure in the middle of a stream,
usage with cached and reasoning tokens, and the key never showing in any message. Answers
and chunks are validated with the official OpenAI SDK's types, and what crossed the wire
(requests, answers, stream events, model pages) with the provider's own official types
(:mod:`tests.unit.official_types`).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
import orjson
import pytest
import structlog.testing
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from shared.providers import (
    ChatUpstreamRequest,
    Endpoint,
    KeyRejected,
    ProviderAdapter,
    StreamDecoder,
    UnsupportedFeature,
    UpstreamFailure,
    Usage,
    adapter_for,
)
from shared.secrets import ProviderKey
from tests.emulator import EmulatorState, provider_base_url, running_emulator
from tests.unit.official_types import BY_KIND, WireCheck

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}


def new_key() -> str:
    return f"sk-test-{secrets.token_urlsafe(24)}"


def leaks(text: str, key: str) -> list[str]:
    """Every 8-character run of ``key`` that appears in ``text``."""
    return [key[i : i + 8] for i in range(len(key) - 7) if key[i : i + 8] in text]


@dataclass
class Streamed:
    chunks: list[dict[str, Any]]
    failure: UpstreamFailure | None
    usage: Usage | None
    text: str = ""
    finish: str | None = None
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    argument_deltas: int = 0


def accumulate(
    chunks: list[dict[str, Any]], failure: UpstreamFailure | None, usage: Usage | None
) -> Streamed:
    result = Streamed(chunks, failure, usage)
    for chunk in chunks:
        for choice in chunk["choices"]:
            delta = choice["delta"]
            result.text += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                slot = result.calls.setdefault(
                    call["index"], {"id": None, "name": "", "arguments": ""}
                )
                slot["id"] = call.get("id") or slot["id"]
                function = call.get("function") or {}
                slot["name"] += function.get("name") or ""
                if function.get("arguments"):
                    result.argument_deltas += 1
                slot["arguments"] += function.get("arguments") or ""
            result.finish = choice.get("finish_reason") or result.finish
    return result


class ProviderContract:
    """The checks; a subclass names its kind and what its provider cannot do."""

    kind: ClassVar[str]
    # Whether the provider fetches images given by URL (Bedrock does not).
    image_urls: ClassVar[bool] = True
    # Where the key travels, as the emulator records it.
    key_header: ClassVar[str] = "authorization"
    # Whether the model list is paged (Bedrock's foundation-model list is one page).
    paged_models: ClassVar[bool] = True
    reports_reasoning: ClassVar[bool] = True
    # OpenAI-format vendor quirks the emulator should play for this kind.
    flavour: ClassVar[str] = "openai"

    @property
    def adapter(self) -> ProviderAdapter:
        return adapter_for(self.kind)

    @property
    def wire(self) -> WireCheck:
        return BY_KIND[self.kind]

    @asynccontextmanager
    async def provider(
        self, state: EmulatorState
    ) -> AsyncIterator[tuple[Endpoint, httpx.AsyncClient]]:
        async with running_emulator(state) as base_url, httpx.AsyncClient(timeout=10) as client:
            yield Endpoint(self.kind, provider_base_url(base_url, self.kind)), client

    def state(self, **overrides: Any) -> tuple[EmulatorState, str, str]:
        key, model = new_key(), f"model-{secrets.token_hex(3)}"
        state = EmulatorState(keys={key}, models=[model], openai_flavour=self.flavour, **overrides)
        return state, key, model

    async def send(self, client: httpx.AsyncClient, request: ChatUpstreamRequest) -> httpx.Response:
        return await client.request(
            request.method, request.url, headers=request.headers, content=request.body
        )

    async def chat(
        self, endpoint: Endpoint, client: httpx.AsyncClient, key: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        request = self.adapter.chat_request(endpoint, ProviderKey(key), body)
        self.wire.request(request.url, request.body)
        response = await self.send(client, request)
        assert response.status_code == 200, response.text
        self.wire.answer(response.content)
        completion = self.adapter.response_to_openai(response.content, model=body["model"])
        ChatCompletion.model_validate(completion)
        return completion

    async def stream(
        self, endpoint: Endpoint, client: httpx.AsyncClient, key: str, body: dict[str, Any]
    ) -> Streamed:
        request = self.adapter.chat_request(endpoint, ProviderKey(key), {**body, "stream": True})
        decoder: StreamDecoder = self.adapter.stream_decoder(
            model=body["model"], key=ProviderKey(key)
        )
        self.wire.request(request.url, request.body)
        chunks: list[dict[str, Any]] = []
        received = bytearray()
        async with client.stream(
            request.method, request.url, headers=request.headers, content=request.body
        ) as response:
            assert response.status_code == 200, await response.aread()
            async for piece in response.aiter_raw():
                received += piece
                chunks.extend(decoder.feed(piece))
        chunks.extend(decoder.close())
        self.wire.stream(bytes(received))
        for chunk in chunks:
            ChatCompletionChunk.model_validate(chunk)
        return accumulate(chunks, decoder.failure, decoder.usage)

    # The key check and the listing.

    async def test_verify_key_accepts_a_key_the_provider_accepts(self) -> None:
        """A key the provider knows passes, and it travelled in the provider's own header."""
        state, key, _ = self.state()
        async with self.provider(state) as (endpoint, client):
            await self.adapter.verify_key(client, endpoint, ProviderKey(key))

        assert key in state.requests[0].headers[self.key_header]

    async def test_verify_key_refusal_never_quotes_the_key(self) -> None:
        """A refused key raises KeyRejected whose message and logs hold no run of the key."""
        state, _, _ = self.state(echo_key_in_errors=True)
        bad = new_key()
        async with self.provider(state) as (endpoint, client):
            with structlog.testing.capture_logs() as logs, pytest.raises(KeyRejected) as caught:
                await self.adapter.verify_key(client, endpoint, ProviderKey(bad))

        shown = " ".join([str(caught.value), repr(caught.value), repr(logs)])
        assert caught.value.provider == self.kind
        assert leaks(shown, bad) == []

    async def test_list_models_follows_every_page(self) -> None:
        """Five models served two per page all arrive, in order."""
        state, key, _ = self.state(page_size=2)
        state.models = [f"model-{secrets.token_hex(3)}-{n}" for n in range(5)]
        async with self.provider(state) as (endpoint, client):
            listed = await self.adapter.list_models(client, endpoint, ProviderKey(key))

        assert [m.id for m in listed][:5] == state.models
        if self.paged_models:
            assert len(state.requests) == 3
        await self.check_pages_seen(state)

    async def check_pages_seen(self, state: EmulatorState) -> None:
        """Ask again for each page the adapter asked for, and check it with official types."""
        async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
            root = base_url.removesuffix("/v1")
            for seen in list(state.requests):
                page = await client.get(root + seen.path, params=seen.query, headers=seen.headers)
                assert page.status_code == 200, page.text
                self.wire.models_page(seen.path, page.content)

    # Chat.

    async def test_plain_chat_answers_as_an_openai_completion(self) -> None:
        """A plain answer comes back as a valid chat completion with its usage."""
        state, key, model = self.state()
        body = {
            "model": model,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi there"},
            ],
            "max_tokens": 50,
        }
        async with self.provider(state) as (endpoint, client):
            completion = await self.chat(endpoint, client, key, body)

        choice = completion["choices"][0]
        assert choice["message"]["content"] == f"Hello from {model}: hi there"
        assert choice["finish_reason"] == "stop"
        assert completion["usage"]["prompt_tokens"] == 4
        assert completion["usage"]["completion_tokens"] == 5

    async def test_stream_gives_valid_chunks_then_the_usage_chunk(self) -> None:
        """A streamed answer is whole, ends with its finish reason and then a usage chunk."""
        state, key, model = self.state(stream_chunks=4)
        body = {"model": model, "messages": [{"role": "user", "content": "tell me"}]}
        async with self.provider(state) as (endpoint, client):
            streamed = await self.stream(
                endpoint, client, key, {**body, "stream_options": {"include_usage": True}}
            )

        assert streamed.failure is None
        assert streamed.text == f"Hello from {model}: tell me"
        assert streamed.finish == "stop"
        assert streamed.chunks[-1]["choices"] == []
        assert streamed.chunks[-1]["usage"]["prompt_tokens"] == 2
        assert streamed.usage == Usage(input_tokens=2, output_tokens=5)
        assert len({c["id"] for c in streamed.chunks}) == 1

    async def test_usage_reports_cached_and_reasoning_tokens(self) -> None:
        """Cached input and reasoning output counts reach the neutral Usage, plain and streamed."""
        state, key, model = self.state(cached_tokens=3, reasoning_tokens=2)
        body = {"model": model, "messages": [{"role": "user", "content": "a b"}]}
        async with self.provider(state) as (endpoint, client):
            completion = await self.chat(endpoint, client, key, body)
            streamed = await self.stream(
                endpoint, client, key, {**body, "stream_options": {"include_usage": True}}
            )

        usage = completion["usage"]
        assert usage["prompt_tokens"] == 2 + 3
        assert usage["prompt_tokens_details"]["cached_tokens"] == 3
        assert streamed.usage is not None
        assert streamed.usage.cached_input_tokens == 3
        assert streamed.usage.input_tokens == 5
        if self.reports_reasoning:
            assert usage["completion_tokens_details"]["reasoning_tokens"] == 2
            assert streamed.usage.reasoning_tokens == 2

    # Tools.

    async def test_parallel_tool_calls_come_back_with_their_arguments(self) -> None:
        """Two tools offered, two calls answered, with arguments that parse, plain and streamed."""
        state, key, model = self.state(scenario="tool_call")
        body = {
            "model": model,
            "messages": [{"role": "user", "content": "weather and time?"}],
            "tools": [WEATHER, TIME],
            "tool_choice": "auto",
        }
        async with self.provider(state) as (endpoint, client):
            completion = await self.chat(endpoint, client, key, body)
            streamed = await self.stream(endpoint, client, key, body)

        calls = completion["choices"][0]["message"]["tool_calls"]
        assert completion["choices"][0]["finish_reason"] == "tool_calls"
        assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
        assert orjson.loads(calls[0]["function"]["arguments"]) == {"city": "emulated", "days": 1}
        assert all(c["id"] for c in calls)
        assert streamed.finish == "tool_calls"
        assert [streamed.calls[i]["name"] for i in (0, 1)] == ["get_weather", "get_time"]
        assert orjson.loads(streamed.calls[1]["arguments"]) == {"zone": "emulated"}
        assert all(streamed.calls[i]["id"] for i in (0, 1))

    async def test_tool_results_travel_back_to_the_provider(self) -> None:
        """An assistant turn with two calls and their two results reaches the model whole."""
        state, key, model = self.state(scenario="tool_call")
        body = {
            "model": model,
            "messages": [
                {"role": "user", "content": "weather and time?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        },
                        {
                            "id": "call_b",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": "{}"},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
                {"role": "tool", "tool_call_id": "call_b", "content": "noon"},
            ],
            "tools": [WEATHER, TIME],
        }
        async with self.provider(state) as (endpoint, client):
            completion = await self.chat(endpoint, client, key, body)

        assert "sunny" in completion["choices"][0]["message"]["content"]
        assert "noon" in completion["choices"][0]["message"]["content"]

    # Images.

    async def test_base64_image_reaches_the_provider(self) -> None:
        """A data-URL image arrives as an inline image of the provider's format."""
        state, key, model = self.state(scenario="image_echo")
        content = [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        ]
        body = {"model": model, "messages": [{"role": "user", "content": content}]}
        async with self.provider(state) as (endpoint, client):
            completion = await self.chat(endpoint, client, key, body)

        assert (
            completion["choices"][0]["message"]["content"] == "I see 1 image(s): image/png (base64)"
        )

    async def test_image_url_is_carried_or_refused_by_name(self) -> None:
        """An image URL reaches providers that fetch URLs; others refuse naming the field."""
        state, key, model = self.state(scenario="image_echo")
        url = "https://images.example.test/cat.png"
        content = [{"type": "image_url", "image_url": {"url": url}}]
        body = {"model": model, "messages": [{"role": "user", "content": content}]}
        if not self.image_urls:
            with pytest.raises(UnsupportedFeature) as caught:
                self.adapter.chat_request(
                    Endpoint(self.kind, "http://127.0.0.1:9"), ProviderKey(key), body
                )
            assert caught.value.field == "messages[0].content[0].image_url"
            return

        async with self.provider(state) as (endpoint, client):
            completion = await self.chat(endpoint, client, key, body)

        assert completion["choices"][0]["message"]["content"] == f"I see 1 image(s): {url}"

    # Failures.

    @pytest.mark.parametrize(
        ("status", "category"),
        [
            (400, "invalid_request"),
            (404, "not_found"),
            (429, "rate_limited"),
            (500, "server_error"),
            (503, "overloaded"),
        ],
    )
    async def test_upstream_errors_become_neutral_failures(
        self, status: int, category: str
    ) -> None:
        """Each failing status maps to its category, keeps Retry-After, and names the provider."""
        state, key, model = self.state()
        state.fail_next(status, retry_after=7)
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        async with self.provider(state) as (endpoint, client):
            response = await self.send(
                client, self.adapter.chat_request(endpoint, ProviderKey(key), body)
            )

        failure = self.adapter.error_from_response(
            response.status_code, response.content, response.headers, ProviderKey(key)
        )
        assert (failure.status, failure.category, failure.provider) == (status, category, self.kind)
        assert failure.message
        if status == 429:
            assert failure.retry_after == "7"

    async def test_a_refused_key_in_a_chat_call_is_scrubbed(self) -> None:
        """A chat call with a wrong key fails as authentication, its message free of the key."""
        state, _, model = self.state(echo_key_in_errors=True)
        bad = new_key()
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        async with self.provider(state) as (endpoint, client):
            response = await self.send(
                client, self.adapter.chat_request(endpoint, ProviderKey(bad), body)
            )

        failure = self.adapter.error_from_response(
            response.status_code, response.content, response.headers, ProviderKey(bad)
        )
        assert failure.category == "authentication"
        assert leaks(failure.message + repr(failure), bad) == []

    async def test_a_failure_midway_through_a_stream_is_reported_after_the_text_so_far(
        self,
    ) -> None:
        """Half the text arrives, then the decoder reports the provider's error; no finish."""
        state, key, model = self.state(scenario="mid_stream_error", stream_chunks=4)
        body = {"model": model, "messages": [{"role": "user", "content": "tell me a story"}]}
        async with self.provider(state) as (endpoint, client):
            streamed = await self.stream(endpoint, client, key, body)

        assert streamed.failure is not None
        assert streamed.failure.provider == self.kind
        assert streamed.failure.status >= 400
        assert streamed.text and f"Hello from {model}: tell me a story".startswith(streamed.text)
        assert streamed.finish is None

    def test_a_stream_cut_short_is_a_failure(self) -> None:
        """A stream that ends without its end is reported as ended early, not as a whole answer."""
        decoder = self.adapter.stream_decoder(model="m", key=ProviderKey(new_key()))
        decoder.feed(b"")
        decoder.close()

        assert decoder.failure is not None
        assert decoder.failure.category == "bad_response"
