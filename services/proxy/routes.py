"""The model API's routes, served ahead of the framework.

The two routes members call on every request are answered straight from ASGI: no
routing table, no middleware stack, one log line and one span per call from the chat
service itself. Everything else (health, metrics, the OpenAPI document) goes to the
FastAPI app, which also runs the process's start-up and shutdown.
"""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from services.proxy import errors
from services.proxy.chat import ChatService
from services.proxy.view import Model, Route, View

log = structlog.get_logger(__name__)

_CHAT = "/v1/chat/completions"
_MODELS = "/v1/models"


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
        try:
            response = await self._answer(request, path, scope["method"])
        except Exception:
            log.exception("model_api_failed", path=path)
            response = errors.openai_error(
                500,
                "The gateway failed to handle this request.",
                type_="api_error",
                code="internal_error",
            )
        await response(scope, receive, send)

    async def _answer(self, request: Request, path: str, method: str) -> Response:
        chat: ChatService | None = getattr(self.app.state, "chat", None)
        if chat is None:
            return errors.openai_error(
                503, "The gateway is starting.", type_="api_error", code="starting"
            )

        if path == _CHAT:
            if method != "POST":
                return errors.method_not_allowed("POST")
            return await chat.complete(request)

        if path == _MODELS or path.startswith(_MODELS + "/"):
            if method != "GET":
                return errors.method_not_allowed("GET")
            return self._models(chat, request, path.removeprefix(_MODELS).removeprefix("/"))

        return errors.openai_error(
            404,
            f"Unknown route {method} {path}.",
            type_="invalid_request_error",
            code="unknown_route",
        )

    def _models(self, chat: ChatService, request: Request, name: str) -> Response:
        stale = chat.refusal_while_stale()
        if stale is not None:
            return stale

        caller = chat.authenticate(request)
        if caller is None:
            return errors.unauthenticated()

        if not name:
            data = [_model_object(m) for m in self._view.usable_models(caller)]
            return _json({"object": "list", "data": data})

        route = self._view.route(caller, name)
        if not isinstance(route, Route):
            return errors.refused(route, name)

        return _json(_model_object(route.model))


def _model_object(model: Model) -> dict[str, object]:
    return {
        "id": model.name,
        "object": "model",
        "created": model.created,
        "owned_by": model.provider,
    }


def _json(payload: Any) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")
