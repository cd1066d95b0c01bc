"""What the Anthropic and Responses doors share: pass through to their own kind, translate for the rest.

A door admits the call like every other (the gateway decides), then either sends the
client's request as written to a provider that speaks the door's dialect natively, or
translates it to the OpenAI chat hub for any other provider. The door itself says only
what differs: its dialect, how to check and translate a body, how to name a hub field
back in the client's terms, and how the answer goes back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import orjson
from starlette.requests import Request
from starlette.responses import Response

from services.proxy.calls import Call
from services.proxy.errors import Dialect
from services.proxy.gateway import Admitted, Gateway
from services.proxy.relays import NativeReply, Reply
from shared.providers import ChatUpstreamRequest, UnsupportedFeature
from shared.providers.base import Door


class TranslatingDoor(ABC):
    dialect: ClassVar[Dialect]
    operation: ClassVar[str]
    native_door: ClassVar[Door]

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def __call__(self, request: Request) -> Response:
        admitted = await self._gateway.admit(request, self.dialect, self.operation, self.check)
        if isinstance(admitted, Response):
            return admitted

        try:
            prepared = self._prepared(admitted)
        except UnsupportedFeature as error:
            return self._gateway.unsupported(admitted.call, error)

        return await self._gateway.forward(admitted, prepared, self._reply(admitted))

    @abstractmethod
    def check(self, body: dict[str, Any], dialect: Dialect) -> Response | None:
        """A refusal of a body this door cannot carry, or None."""

    @abstractmethod
    def to_hub(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body as an OpenAI chat request."""

    @abstractmethod
    def client_field(self, hub_field: str) -> str:
        """A hub field named as the client wrote it."""

    @abstractmethod
    def native_reply(self, call: Call) -> NativeReply:
        """How a native provider's answer goes back."""

    @abstractmethod
    def translated_reply(self, call: Call, body: dict[str, Any]) -> Reply:
        """How the hub's answer goes back in the door's dialect."""

    def _native(self, call: Call) -> bool:
        return self.native_door in call.adapter.native_doors

    def _prepared(self, admitted: Admitted) -> ChatUpstreamRequest:
        call, body = admitted.call, admitted.body
        endpoint, key = call.credential.endpoint, call.credential.key
        if self._native(call):
            raw = orjson.dumps({**body, "model": call.upstream_model})
            return call.adapter.native_request(
                endpoint, key, self.native_door, raw, admitted.request.headers
            )

        hub = self.to_hub(body)
        hub["model"] = call.upstream_model
        try:
            return call.adapter.chat_request(endpoint, key, hub)
        except UnsupportedFeature as error:
            # The adapter names the hub's field; the client knows its own.
            raise UnsupportedFeature(self.client_field(error.field), error.message) from None

    def _reply(self, admitted: Admitted) -> Reply:
        if self._native(admitted.call):
            return self.native_reply(admitted.call)

        return self.translated_reply(admitted.call, admitted.body)
