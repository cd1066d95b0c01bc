"""The OpenAI door: ``POST /v1/chat/completions`` to a model of any provider.

OpenAI chat is the hub format, so the body goes to the provider's adapter as it is,
with the model's upstream id. An OpenAI-style provider answers in the client's own
dialect, and its answer and stream are relayed as bytes. Any other provider's answer
comes back through its adapter as hub chunks, written out as OpenAI's stream.

A stream always asks the provider for usage, since usage is how calls are accounted;
the usage chunk is hidden from a client that did not ask for it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from services.proxy.calls import Call
from services.proxy.errors import OPENAI, Dialect
from services.proxy.gateway import Gateway
from services.proxy.relays import (
    NativeReply,
    OpenAIChunkEncoder,
    Reply,
    TranslatedReply,
    openai_error_event,
)
from shared.providers import UnsupportedFeature


class ChatDoor:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def __call__(self, request: Request) -> Response:
        admitted = await self._gateway.admit(request, OPENAI, "chat", check_chat)
        if isinstance(admitted, Response):
            return admitted

        call, body = admitted.call, admitted.body
        options = body.get("stream_options") or {}
        client_wants_usage = options.get("include_usage") is True
        hub = {**body, "model": call.upstream_model}
        if call.streamed:
            # Usage is how calls are accounted: ask for it, and hide it if the client did not.
            hub["stream_options"] = {**options, "include_usage": True}
        try:
            prepared = call.adapter.chat_request(call.credential.endpoint, call.credential.key, hub)
        except UnsupportedFeature as error:
            return self._gateway.unsupported(call, error)

        return await self._gateway.forward(admitted, prepared, chat_reply(call, client_wants_usage))


def chat_reply(call: Call, client_wants_usage: bool) -> Reply:
    """Pass-through for an OpenAI-style provider; the hub's chunks re-written for any other."""
    if "openai-chat" in call.adapter.native_doors:
        return NativeReply(
            call.adapter,
            call.credential.key,
            upstream_model=call.upstream_model,
            provider=call.provider,
            error_event=openai_error_event,
            is_error=_is_error_event,
            hide_usage_only_events=not client_wants_usage,
        )

    return TranslatedReply(
        call.adapter,
        call.credential.key,
        upstream_model=call.upstream_model,
        provider=call.provider,
        to_client=lambda completion: completion,
        encoder=lambda: OpenAIChunkEncoder(include_usage=client_wants_usage),
    )


def check_chat(body: dict[str, Any], dialect: Dialect) -> Response | None:
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return dialect.bad_request(
            "'messages' is required and must be a non-empty array.", param="messages"
        )

    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        return dialect.bad_request("'stream_options' must be an object.", param="stream_options")

    return None


def _is_error_event(payload: dict[str, Any]) -> bool:
    # OpenAI ends a stream that fails midway with {"error": {...}} in place of a chunk.
    return isinstance(payload.get("error"), dict | str)
