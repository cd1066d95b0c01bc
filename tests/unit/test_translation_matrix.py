"""Front door x provider x scenario, through the library alone, with the official SDKs as clients.

The SDK talks to an in-process stand-in for the proxy (an httpx2 MockTransport handler)
that does what the proxy's front doors do with this library: pass through when the
provider speaks the door's dialect, otherwise translate to the hub, call the provider
(the emulator, over real HTTP on 127.0.0.1) and translate back. The glue here is the
reference for the proxy's; the end-to-end matrix through the running proxy lives with it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import orjson
import pytest

from shared.providers import Endpoint, ProviderAdapter, UnsupportedFeature, adapter_for, known_kinds
from shared.secrets import ProviderKey
from shared.translation import (
    OPENAI_DONE,
    AnthropicStreamEncoder,
    anthropic_failure,
    anthropic_to_openai_request,
    openai_chunk,
    openai_failure,
    openai_stream_error,
    openai_to_anthropic_response,
)
from tests.emulator import EmulatorState, provider_base_url, running_emulator
from tests.unit.provider_contract import PNG, new_key

CELLS = ("plain", "stream", "tools", "image", "error")
WEATHER = {
    "name": "get_weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


class Gateway:
    """What the proxy does for one call, minus auth, routing and accounting."""

    def __init__(
        self, client: httpx.AsyncClient, endpoint: Endpoint, key: str, upstream_model: str
    ) -> None:
        self.client = client
        self.endpoint = endpoint
        self.key = ProviderKey(key)
        self.model = upstream_model
        self.adapter: ProviderAdapter = adapter_for(endpoint.kind)

    async def anthropic_door(self, request: httpx2.Request) -> httpx2.Response:
        body = orjson.loads(request.content)
        asked_for = body["model"]
        if "anthropic-messages" in self.adapter.native_doors:
            native = self.adapter.native_request(
                self.endpoint,
                self.key,
                "anthropic-messages",
                orjson.dumps({**body, "model": self.model}),
                dict(request.headers),
            )
            upstream = await self.client.post(
                native.url, headers=native.headers, content=native.body
            )
            return httpx2.Response(
                upstream.status_code,
                content=upstream.content,
                headers={"content-type": upstream.headers["content-type"]},
            )

        try:
            chat = {**anthropic_to_openai_request(body), "model": self.model}
            prepared = self.adapter.chat_request(self.endpoint, self.key, chat)
        except UnsupportedFeature as refused:
            return httpx2.Response(
                400,
                json={
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": refused.message},
                },
            )

        upstream = await self.client.post(
            prepared.url, headers=prepared.headers, content=prepared.body
        )
        if upstream.status_code != 200:
            reply = anthropic_failure(
                self.adapter.error_from_response(
                    upstream.status_code, upstream.content, upstream.headers, self.key
                )
            )
            return httpx2.Response(reply.status, json=reply.body, headers=reply.headers)

        if not chat.get("stream"):
            completion = self.adapter.response_to_openai(upstream.content, model=self.model)
            return httpx2.Response(
                200, json=openai_to_anthropic_response(completion, model=asked_for)
            )

        decoder = self.adapter.stream_decoder(model=self.model, key=self.key)
        encoder = AnthropicStreamEncoder(model=asked_for)
        out = [encoder.feed(chunk) for chunk in decoder.feed(upstream.content)]
        out += [encoder.feed(chunk) for chunk in decoder.close()]
        out.append(encoder.fail(decoder.failure) if decoder.failure else encoder.finish())
        return httpx2.Response(
            200, content=b"".join(out), headers={"content-type": "text/event-stream"}
        )

    async def openai_door(self, request: httpx2.Request) -> httpx2.Response:
        body = {**orjson.loads(request.content), "model": self.model}
        prepared = self.adapter.chat_request(self.endpoint, self.key, body)
        upstream = await self.client.post(
            prepared.url, headers=prepared.headers, content=prepared.body
        )
        if upstream.status_code != 200:
            reply = openai_failure(
                self.adapter.error_from_response(
                    upstream.status_code, upstream.content, upstream.headers, self.key
                )
            )
            return httpx2.Response(reply.status, json=reply.body, headers=reply.headers)

        if "openai-chat" in self.adapter.native_doors:
            return httpx2.Response(
                200,
                content=upstream.content,
                headers={"content-type": upstream.headers["content-type"]},
            )

        if not body.get("stream"):
            return httpx2.Response(
                200, json=self.adapter.response_to_openai(upstream.content, model=self.model)
            )

        decoder = self.adapter.stream_decoder(model=self.model, key=self.key)
        chunks = [*decoder.feed(upstream.content), *decoder.close()]
        out = [openai_chunk(chunk) for chunk in chunks]
        out.append(
            openai_chunk(openai_stream_error(decoder.failure)) if decoder.failure else OPENAI_DONE
        )
        return httpx2.Response(
            200, content=b"".join(out), headers={"content-type": "text/event-stream"}
        )


def _transport(door: Callable[[httpx2.Request], Any]) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.MockTransport(door))


async def _anthropic_cell(sdk: anthropic.AsyncAnthropic, cell: str) -> str:
    text = [{"role": "user", "content": "hi there"}]
    if cell == "plain":
        message = await sdk.messages.create(model="team/m", max_tokens=100, messages=text)  # type: ignore[arg-type]
        return message.content[0].text  # type: ignore[union-attr]

    if cell == "stream":
        async with sdk.messages.stream(model="team/m", max_tokens=100, messages=text) as stream:  # type: ignore[arg-type]
            return (await stream.get_final_message()).content[0].text  # type: ignore[union-attr]

    if cell == "tools":
        message = await sdk.messages.create(
            model="team/m",
            max_tokens=100,
            messages=text,
            tools=[WEATHER],  # type: ignore[arg-type, list-item]
        )
        block = message.content[0]
        assert message.stop_reason == "tool_use"
        return f"{block.name} {block.input}"  # type: ignore[union-attr]

    if cell == "image":
        content = [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
        ]
        message = await sdk.messages.create(
            model="team/m",
            max_tokens=100,
            messages=[{"role": "user", "content": content}],  # type: ignore[list-item]
        )
        return message.content[0].text  # type: ignore[union-attr]

    async with sdk.messages.stream(model="team/m", max_tokens=100, messages=text) as stream:  # type: ignore[arg-type]
        await stream.get_final_message()
    return "no error"


async def _openai_cell(sdk: openai.AsyncOpenAI, cell: str) -> str:
    text = [{"role": "user", "content": "hi there"}]
    if cell == "plain":
        answer = await sdk.chat.completions.create(model="team/m", messages=text)  # type: ignore[arg-type]
        return str(answer.choices[0].message.content)

    if cell in ("stream", "error"):
        stream = await sdk.chat.completions.create(
            model="team/m",
            messages=text,
            stream=True,
            stream_options={"include_usage": True},  # type: ignore[arg-type]
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    if cell == "tools":
        tool = {
            "type": "function",
            "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]},
        }
        answer = await sdk.chat.completions.create(model="team/m", messages=text, tools=[tool])  # type: ignore[arg-type, list-item]
        call = answer.choices[0].message.tool_calls[0]  # type: ignore[index]
        return f"{call.function.name} {orjson.loads(call.function.arguments)}"  # type: ignore[union-attr]

    content = [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]
    answer = await sdk.chat.completions.create(
        model="team/m", messages=[{"role": "user", "content": content}]
    )  # type: ignore[list-item]
    return str(answer.choices[0].message.content)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("kind", known_kinds())
@pytest.mark.parametrize("door", ["openai", "anthropic"])
async def test_every_door_reaches_every_provider(door: str, kind: str, cell: str) -> None:
    """One cell of the matrix: the SDK's answer is what the emulated model said."""
    key, model = new_key(), f"m-{secrets.token_hex(3)}"
    scenario = {"tools": "tool_call", "image": "image_echo", "error": "mid_stream_error"}.get(
        cell, "text"
    )
    state = EmulatorState(
        keys={key},
        models=[model],
        scenario=scenario,
        openai_flavour={"groq": "groq", "deepseek": "deepseek", "openrouter": "openrouter"}.get(
            kind, "openai"
        ),
    )
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        gateway = Gateway(client, Endpoint(kind, provider_base_url(base_url, kind)), key, model)
        if door == "anthropic":
            sdk_a = anthropic.AsyncAnthropic(
                api_key="byom_x",
                base_url="http://gw.test",
                http_client=_transport(gateway.anthropic_door),
                max_retries=0,
            )
            run = _anthropic_cell(sdk_a, cell)
            failure: type[Exception] = anthropic.APIError
        else:
            sdk_o = openai.AsyncOpenAI(
                api_key="byom_x",
                base_url="http://gw.test/v1",
                http_client=_transport(gateway.openai_door),
                max_retries=0,
            )
            run = _openai_cell(sdk_o, cell)
            failure = openai.APIError

        if cell == "error":
            with pytest.raises(failure):
                await run
            return

        said = await run

    expected = {
        "plain": f"Hello from {model}: hi there",
        "stream": f"Hello from {model}: hi there",
        "tools": "get_weather {'city': 'emulated'}",
        "image": "I see 1 image(s): image/png (base64)",
    }[cell]
    assert said == expected
