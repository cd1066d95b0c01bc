"""The model API's routes, served ahead of the framework.

The routes members call on every request are answered straight from ASGI: no routing
table, no middleware stack, one log line and one span per call from the gateway itself.
Everything else (health, metrics, the OpenAPI document) goes to the FastAPI app, which
also runs the process's start-up and shutdown.

| route | door | dialect |
|---|---|---|
| ``POST /v1/chat/completions`` | :mod:`services.proxy.chat` | OpenAI |
| ``POST /v1/responses`` | :mod:`services.proxy.responses` | OpenAI |
| ``POST /v1/embeddings`` | :mod:`services.proxy.embeddings` | OpenAI |
| ``POST /v1/messages`` | :mod:`services.proxy.messages` | Anthropic |
| ``POST /v1/messages/count_tokens`` | :mod:`services.proxy.messages` | Anthropic |
| ``GET /v1/models``, ``GET /v1/models/{name}`` | here | OpenAI |
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from services.proxy.chat import ChatDoor
from services.proxy.embeddings import EmbeddingsDoor
from services.proxy.errors import ANTHROPIC, OPENAI, Dialect
from services.proxy.gateway import Gateway
from services.proxy.messages import CountTokensDoor, MessagesDoor
from services.proxy.responses import ResponsesDoor
from services.proxy.view import Model, Route, View

log = structlog.get_logger(__name__)

_MODELS = "/v1/models"
_ANTHROPIC_PREFIX = "/v1/messages"


@dataclass(frozen=True, slots=True)
class FrontDoor:
    """A POST route members call, and the dialect its clients understand."""

    dialect: Dialect
    answer: Callable[[Request], Awaitable[Response]]


def doors(gateway: Gateway) -> Mapping[str, FrontDoor]:
    return {
        "/v1/chat/completions": FrontDoor(OPENAI, ChatDoor(gateway)),
        "/v1/responses": FrontDoor(OPENAI, ResponsesDoor(gateway)),
        "/v1/embeddings": FrontDoor(OPENAI, EmbeddingsDoor(gateway)),
        "/v1/messages": FrontDoor(ANTHROPIC, MessagesDoor(gateway)),
        "/v1/messages/count_tokens": FrontDoor(ANTHROPIC, CountTokensDoor(gateway)),
    }


class ModelAPI:
    """The ASGI application uvicorn serves: hot routes here, the rest to FastAPI."""

    def __init__(self, app: FastAPI, view: View) -> None:
        self.app = app
        self._view = view

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1/"):
            await self.app(scope, receive, send)
            return

        structlog.contextvars.clear_contextvars()
        request = Request(scope, receive)
        dialect = ANTHROPIC if path.startswith(_ANTHROPIC_PREFIX) else OPENAI
        try:
            response = await self._answer(request, path, scope["method"], dialect)
        except Exception:
            log.exception("model_api_failed", path=path)
            response = dialect.internal()
        await response(scope, receive, send)

    async def _answer(self, request: Request, path: str, method: str, dialect: Dialect) -> Response:
        gateway: Gateway | None = getattr(self.app.state, "gateway", None)
        routes: Mapping[str, FrontDoor] | None = getattr(self.app.state, "doors", None)
        if gateway is None or routes is None:
            return dialect.starting()

        door = routes.get(path)
        if door is not None:
            if method != "POST":
                return door.dialect.method_not_allowed("POST")
            return await door.answer(request)

        if path == _MODELS or path.startswith(_MODELS + "/"):
            if method != "GET":
                return OPENAI.method_not_allowed("GET")
            return self._models(gateway, request, path.removeprefix(_MODELS).removeprefix("/"))

        return dialect.unknown_route(method, path)

    def _models(self, gateway: Gateway, request: Request, name: str) -> Response:
        stale = gateway.refusal_while_stale(OPENAI)
        if stale is not None:
            return stale

        caller = gateway.authenticate(request)
        if caller is None:
            return OPENAI.unauthenticated()

        if not name:
            data = [_model_object(n, m) for n, m in self._view.usable_names(caller)]
            return _json({"object": "list", "data": data})

        route = self._view.route(caller, name)
        if not isinstance(route, Route):
            return OPENAI.refused(route, name)

        return _json(_model_object(name, route.model))


def _model_object(name: str, model: Model) -> dict[str, object]:
    return {
        "id": name,
        "object": "model",
        "created": model.created,
        "owned_by": model.provider,
    }


def _json(payload: Any) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")
