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

from starlette.responses import Response

from services.proxy.calls import Call
from services.proxy.doors import TranslatingDoor
from services.proxy.errors import OPENAI, Dialect
from services.proxy.relays import NativeReply, Reply, TranslatedReply
from shared.providers import UpstreamFailure
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


class ResponsesDoor(TranslatingDoor):
    dialect = OPENAI
    operation = "responses"
    native_door = "openai-responses"

    def check(self, body: dict[str, Any], dialect: Dialect) -> Response | None:
        return check_responses(body, dialect)

    def to_hub(self, body: dict[str, Any]) -> dict[str, Any]:
        return responses_to_chat_request(body)

    def client_field(self, hub_field: str) -> str:
        return _responses_field(hub_field)

    def native_reply(self, call: Call) -> NativeReply:
        return _native_reply(call)

    def translated_reply(self, call: Call, body: dict[str, Any]) -> Reply:
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
    return NativeReply(
        call.adapter,
        call.credential.key,
        upstream_model=call.upstream_model,
        provider=call.provider,
        error_event=responses_error_event,
        numbered=True,
    )


def responses_error_event(failure: UpstreamFailure, provider: str, sequence_number: int) -> bytes:
    """The ``error`` event for a relayed Responses stream whose connection broke.

    ``sequence_number`` follows the last one the provider's events carried.
    """
    error = openai_failure(failure, provider).body["error"]
    return named_event(
        "error",
        {
            "type": "error",
            "code": error["code"],
            "message": error["message"],
            "param": None,
            "sequence_number": sequence_number,
        },
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
