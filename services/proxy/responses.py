"""The Responses door: ``POST /v1/responses``, which coding agents now speak, to any provider.

Providers that serve the Responses API themselves (OpenAI, xAI) get the request as the
client wrote it, the model's upstream id put in, and their answer and events come back
as bytes. Every other provider is reached through the OpenAI chat hub: the request is
translated to a chat request, and the hub's answer or chunks are written back as a
Response or Responses events. The gateway keeps no conversation state, so
``previous_response_id`` and stored responses are refused with a 400 naming the field.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response

from services.proxy.calls import Call
from services.proxy.errors import OPENAI, Dialect
from services.proxy.gateway import Admitted, Gateway
from services.proxy.relays import NativeReply, Reply, TranslatedReply
from shared.providers import ChatUpstreamRequest, UnsupportedFeature, UpstreamFailure
from shared.translation import (
    ResponsesStreamEncoder,
    chat_to_responses_response,
    named_event,
    openai_failure,
    responses_to_chat_request,
)

# Where the hub fields of a translated request came from, for a refusal by the adapter.
_ORIGINS: Final = {
    "messages": "input",
    "max_tokens": "max_output_tokens",
    "response_format": "text.format",
    "reasoning_effort": "reasoning.effort",
}


class ResponsesDoor:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def __call__(self, request: Request) -> Response:
        admitted = await self._gateway.admit(request, OPENAI, "responses", check_responses)
        if isinstance(admitted, Response):
            return admitted

        call = admitted.call
        try:
            prepared = self._prepared(admitted)
        except UnsupportedFeature as error:
            return self._gateway.unsupported(call, error)

        return await self._gateway.forward(admitted, prepared, self._reply(admitted))

    def _prepared(self, admitted: Admitted) -> ChatUpstreamRequest:
        call, body = admitted.call, admitted.body
        endpoint, key = call.credential.endpoint, call.credential.key
        if "openai-responses" in call.adapter.native_doors:
            raw = orjson.dumps({**body, "model": call.upstream_model})
            return call.adapter.native_request(
                endpoint, key, "openai-responses", raw, admitted.request.headers
            )

        hub = responses_to_chat_request(body)
        hub["model"] = call.upstream_model
        try:
            return call.adapter.chat_request(endpoint, key, hub)
        except UnsupportedFeature as error:
            raise UnsupportedFeature(_responses_field(error.field), error.message) from None

    def _reply(self, admitted: Admitted) -> Reply:
        call, body = admitted.call, admitted.body
        if "openai-responses" in call.adapter.native_doors:
            return _native_reply(call)

        model = str(body["model"])
        return TranslatedReply(
            call.adapter,
            call.credential.key,
            upstream_model=call.upstream_model,
            provider=call.provider,
            to_client=lambda completion: chat_to_responses_response(completion, body, model=model),
            encoder=lambda: ResponsesStreamEncoder(body, model=model),
        )


def _native_reply(call: Call) -> NativeReply:
    # The provider's own error events are Responses events already, and quote no key.
    return NativeReply(
        call.adapter,
        call.credential.key,
        upstream_model=call.upstream_model,
        provider=call.provider,
        error_event=responses_error_event,
        is_error=lambda payload: False,
    )


def responses_error_event(failure: UpstreamFailure, provider: str) -> bytes:
    """The ``error`` event for a relayed Responses stream whose connection broke.

    It carries no ``sequence_number``: the relay does not read every event to know it.
    """
    error = openai_failure(failure, provider).body["error"]
    return named_event(
        "error",
        {"type": "error", "code": error["code"], "message": error["message"], "param": None},
    )


def check_responses(body: dict[str, Any], dialect: Dialect) -> Response | None:
    given = body.get("input")
    if not isinstance(given, str | list) or not given:
        return dialect.bad_request(
            "'input' is required: a string or a non-empty array of items.", param="input"
        )

    return None


def _responses_field(hub_field: str) -> str:
    head, dot, rest = hub_field.partition(".")
    name, bracket, index = head.partition("[")
    return _ORIGINS.get(name, name) + bracket + index + dot + rest
