"""The embeddings door: ``POST /v1/embeddings``, for providers with OpenAI's embeddings API.

Embeddings have no hub to translate through: a provider either serves OpenAI's
``/embeddings`` (OpenAI and the OpenAI-style servers and vendors that list it) and gets
the request as the client wrote it, the model's upstream id put in, or the call is
refused with a 400 naming the model, before anything is sent.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from services.proxy.errors import OPENAI, Dialect
from services.proxy.gateway import Gateway
from services.proxy.relays import NativeReply, openai_error_event


class EmbeddingsDoor:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def __call__(self, request: Request) -> Response:
        admitted = await self._gateway.admit(request, OPENAI, "embeddings", check_embeddings)
        if isinstance(admitted, Response):
            return admitted

        call, body = admitted.call, admitted.body
        if "openai-embeddings" not in call.adapter.native_doors:
            return OPENAI.not_offered(
                f"The model '{body['model']}' is served by a {call.adapter.kind} connection, "
                "which offers no embeddings API through this gateway.",
                param="model",
            )

        # Embeddings are never streamed.
        call.streamed = False
        raw = orjson.dumps({**body, "model": call.upstream_model})
        prepared = call.adapter.native_request(
            call.credential.endpoint, call.credential.key, "openai-embeddings", raw, {}
        )
        reply = NativeReply(
            call.adapter,
            call.credential.key,
            upstream_model=call.upstream_model,
            provider=call.provider,
            error_event=openai_error_event,
            is_error=lambda payload: False,
        )
        return await self._gateway.forward(admitted, prepared, reply)


def check_embeddings(body: dict[str, Any], dialect: Dialect) -> Response | None:
    given = body.get("input")
    if not isinstance(given, str | list) or not given:
        return dialect.bad_request(
            "'input' is required: a string or a non-empty array.", param="input"
        )

    return None
