"""The emulator's HTTP routes: each provider's upstream API, and control under ``/_emulator``.

| provider | base URL (``<root>`` is ``http://127.0.0.1:<port>``) |
|---|---|
| OpenAI and OpenAI-compatible vendors (chat, Responses, embeddings) | ``<root>/v1`` |
| Anthropic | ``<root>/anthropic/v1`` |
| Google Gemini API | ``<root>/google/v1beta`` |
| Amazon Bedrock (runtime and control plane) | ``<root>/bedrock`` |

One state answers on every route (see :mod:`serving` for what each request goes through
first, and :mod:`scenarios` for what the model answers). The control routes are
unauthenticated: the emulator is a local test tool and binds to loopback by default.
"""

from __future__ import annotations

from typing import TypeGuard

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.emulator import (
    anthropic_routes,
    bedrock_routes,
    gemini_routes,
    openai_extras,
    openai_routes,
)
from tests.emulator.openai_routes import bad_request as _bad_request
from tests.emulator.scenarios import SCENARIOS
from tests.emulator.serving import json_or_none, json_response
from tests.emulator.state import EmulatorState


def create_app(state: EmulatorState) -> Starlette:
    """An ASGI app that plays every emulated provider as ``state`` describes it."""
    control = _Control(state)
    return Starlette(
        routes=[
            *openai_routes.routes(state),
            *openai_extras.routes(state),
            *anthropic_routes.routes(state),
            *gemini_routes.routes(state),
            *bedrock_routes.routes(state),
            Route("/_emulator/requests", control.list_requests, methods=["GET"]),
            Route("/_emulator/requests", control.clear_requests, methods=["DELETE"]),
            Route("/_emulator/faults", control.add_fault, methods=["POST"]),
            Route("/_emulator/models", control.replace_models, methods=["PUT"]),
            Route("/_emulator/scenario", control.choose_scenario, methods=["PUT"]),
        ]
    )


class _Control:
    """Routes that let a test or a human steer the emulator over HTTP."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def list_requests(self, request: Request) -> Response:
        return json_response({"requests": [r.as_json() for r in self.state.requests]})

    async def clear_requests(self, request: Request) -> Response:
        self.state.requests.clear()
        return Response(status_code=204)

    async def add_fault(self, request: Request) -> Response:
        payload = json_or_none(await request.body())
        if not isinstance(payload, dict):
            return _bad_request("Send a JSON object like {'status': 500, 'times': 1}.")

        status, times = payload.get("status"), payload.get("times", 1)
        retry_after, raw_body = payload.get("retry_after"), payload.get("raw_body")
        if not _is_int(status) or not 100 <= status <= 599:
            return _bad_request("'status' must be an HTTP status code.", param="status")

        if not _is_int(times) or times < 1:
            return _bad_request("'times' must be a positive integer.", param="times")

        if retry_after is not None and not isinstance(retry_after, int | float):
            return _bad_request("'retry_after' must be a number of seconds.", "retry_after")

        if raw_body is not None and not isinstance(raw_body, str):
            return _bad_request("'raw_body' must be a string.", param="raw_body")

        self.state.fail_next(
            status,
            times=times,
            retry_after=retry_after,
            raw_body=raw_body.encode() if raw_body is not None else None,
        )
        return Response(status_code=204)

    async def choose_scenario(self, request: Request) -> Response:
        payload = json_or_none(await request.body())
        scenario = payload.get("scenario") if isinstance(payload, dict) else None
        if scenario not in SCENARIOS:
            return _bad_request(
                f"Send a JSON object like {{'scenario': one of {list(SCENARIOS)}}}."
            )

        self.state.scenario = scenario
        return json_response({"scenario": scenario})

    async def replace_models(self, request: Request) -> Response:
        payload = json_or_none(await request.body())
        models = payload.get("models") if isinstance(payload, dict) else None
        if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
            return _bad_request("Send a JSON object like {'models': ['gpt-a', 'gpt-b']}.")

        self.state.models = list(models)
        return json_response({"models": self.state.models})


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
