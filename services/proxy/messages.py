"""The Anthropic door: ``POST /v1/messages`` and ``/v1/messages/count_tokens``, any provider.

What Claude Code-style agents and the official Anthropic SDKs call. The token is taken
from ``x-api-key`` or ``Authorization: Bearer``, and every refusal is Anthropic's error
object, so those clients raise their own typed errors.

- To Anthropic, the request goes as the client wrote it (the model's upstream id put in),
  with the client's ``anthropic-version`` and ``anthropic-beta`` headers unchanged, and the
  answer and stream come back as Anthropic's bytes; only usage is read on the way.
- To any other provider, the request is translated to the OpenAI chat hub, and the hub's
  answer or chunks are written back as a Message or Messages events.
- ``count_tokens`` is Anthropic's own count for Anthropic models, and for any other model
  the documented estimate of :func:`shared.translation.estimate_input_tokens`: no other
  provider counts with Anthropic's rules, and the gateway does not pretend to.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from services.proxy.calls import Call
from services.proxy.doors import TranslatingDoor
from services.proxy.errors import ANTHROPIC, Dialect
from services.proxy.gateway import Gateway
from services.proxy.relays import NativeReply, Reply, TranslatedReply
from shared.providers import UpstreamFailure
from shared.translation import (
    AnthropicStreamEncoder,
    anthropic_failure,
    anthropic_field,
    anthropic_to_openai_request,
    estimate_input_tokens,
    named_event,
    openai_to_anthropic_response,
)


class MessagesDoor(TranslatingDoor):
    dialect = ANTHROPIC
    operation = "messages"
    native_door = "anthropic-messages"

    def check(self, body: dict[str, Any], dialect: Dialect) -> Response | None:
        return check_messages(body, dialect)

    def to_hub(self, body: dict[str, Any]) -> dict[str, Any]:
        return anthropic_to_openai_request(body)

    def client_field(self, hub_field: str) -> str:
        return anthropic_field(hub_field)

    def native_reply(self, call: Call) -> NativeReply:
        return NativeReply(
            call.adapter,
            call.credential.key,
            upstream_model=call.upstream_model,
            provider=call.provider,
            error_event=anthropic_error_event,
            is_error=lambda payload: payload.get("type") == "error",
        )

    def translated_reply(self, call: Call, body: dict[str, Any]) -> Reply:
        # The client named the model by its gateway name; the answer names it the same way.
        model = str(body["model"])
        return TranslatedReply(
            call.adapter,
            call.credential.key,
            upstream_model=call.upstream_model,
            provider=call.provider,
            to_client=lambda completion: openai_to_anthropic_response(completion, model=model),
            encoder=lambda: AnthropicStreamEncoder(
                model=model, input_tokens=estimate_input_tokens(body)
            ),
        )


class CountTokensDoor:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def __call__(self, request: Request) -> Response:
        admitted = await self._gateway.admit(request, ANTHROPIC, "count_tokens", check_count)
        if isinstance(admitted, Response):
            return admitted

        call, body = admitted.call, admitted.body
        # Counting has no stream, and is no generation: the call is recorded with no tokens.
        call.streamed = False
        if "anthropic-count-tokens" not in call.adapter.native_doors:
            return self._gateway.answered_here(call, {"input_tokens": estimate_input_tokens(body)})

        raw = orjson.dumps({**body, "model": call.upstream_model})
        prepared = call.adapter.native_request(
            call.credential.endpoint,
            call.credential.key,
            "anthropic-count-tokens",
            raw,
            admitted.request.headers,
        )
        return await self._gateway.forward(admitted, prepared, _count_reply(call))


def _count_reply(call: Call) -> NativeReply:
    return NativeReply(
        call.adapter,
        call.credential.key,
        upstream_model=call.upstream_model,
        provider=call.provider,
        error_event=anthropic_error_event,
        is_error=lambda payload: False,
    )


def anthropic_error_event(failure: UpstreamFailure, provider: str, _sequence: int = 0) -> bytes:
    """Anthropic's ``error`` event, as it ends a stream that fails midway."""
    return named_event("error", anthropic_failure(failure, provider).body)


def check_messages(body: dict[str, Any], dialect: Dialect) -> Response | None:
    refusal = check_count(body, dialect)
    if refusal is not None:
        return refusal

    # Anthropic requires max_tokens; the SDKs always send it.
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return dialect.bad_request("Field required: a positive integer.", param="max_tokens")

    return None


def check_count(body: dict[str, Any], dialect: Dialect) -> Response | None:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return dialect.bad_request("Field required: an array of messages.", param="messages")

    if not messages:
        return dialect.bad_request("At least one message is required.", param="messages")

    return None
