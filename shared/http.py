"""The admin APIs' error shape and the one place exceptions become HTTP answers.

Admin routes answer errors as ``{"error": {"code": ..., "message": ...}}``. Handlers
raise :class:`ApiError` (or a subclass) with a message that says what was wrong with
which value and never quotes secret material.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry import metrics, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.events.store import ConcurrencyConflict

log = structlog.get_logger(__name__)

# The largest body an admin route reads. No admin request comes near it (a bulk switch of
# 500 model ids is a few kilobytes); without a bound, any member could make a service
# read and parse gigabytes.
ADMIN_MAX_BODY_BYTES = 1024 * 1024


class ApiError(Exception):
    """An answer other than success, with its HTTP status and a stable code."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def error_body(code: str, message: str, **details: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **details}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error_body(error.code, error.message, **error.details), error.status)

    @app.exception_handler(ConcurrencyConflict)
    async def _conflict(_request: Request, _error: ConcurrencyConflict) -> JSONResponse:
        message = "the resource changed while this request was handled; retry it"
        return JSONResponse(error_body("conflict", message), 409)

    @app.exception_handler(DataError)
    async def _unstorable(_request: Request, _error: DataError) -> JSONResponse:
        # The database refused a value the validators let through, such as a NUL byte.
        message = "a value in the request cannot be stored (it contains a NUL or invalid byte)"
        return JSONResponse(error_body("invalid_request", message), 422)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"][1:]), "problem": e["msg"]}
            for e in error.errors()
        ]
        message = "; ".join(f"{p['field'] or 'body'}: {p['problem']}" for p in problems)
        return JSONResponse(error_body("invalid_request", message, problems=problems), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = "request_too_large" if error.status_code == 413 else "http_error"
        return JSONResponse(
            error_body(code, str(error.detail)), error.status_code, headers=error.headers
        )


class BodyLimitMiddleware:
    """Refuses a request body over the limit with 413, before or while it is read."""

    def __init__(self, app: ASGIApp, max_bytes: int = ADMIN_MAX_BODY_BYTES) -> None:
        self.app = app
        self._max = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self._max:
            await JSONResponse(error_body("request_too_large", self._message()), 413)(
                scope, receive, send
            )
            return

        received = 0

        async def bounded() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max:
                    # Raised where the app reads its body; the error handlers answer 413.
                    raise StarletteHTTPException(413, self._message())
            return message

        await self.app(scope, bounded, send)

    def _message(self) -> str:
        return f"the request body is larger than {self._max // 1024} KiB"


class RequestLogMiddleware:
    """One log line, one server span and one duration measurement per request.

    A request id (the caller's ``x-request-id`` when it is short and plain) is bound for
    everything logged inside the request and echoed in the response. The span continues
    the caller's W3C trace context. Metrics are labelled by route template, never by the
    raw path, so identifiers do not become label values.
    """

    def __init__(self, app: ASGIApp, quiet_routes: frozenset[str] = frozenset()) -> None:
        self.app = app
        # Routes called on every key read or probe: their line goes out at debug level.
        self._quiet_routes = quiet_routes
        self._tracer = trace.get_tracer("byom.http")
        self._duration = metrics.get_meter("byom.http").create_histogram(
            "http.server.request.duration", unit="s", description="Duration of HTTP requests."
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        parent = _propagator.extract(carrier)
        method = scope["method"]
        with (
            structlog.contextvars.bound_contextvars(request_id=request_id),
            self._tracer.start_as_current_span(
                f"{method} {scope['path']}", context=parent, kind=trace.SpanKind.SERVER
            ) as span,
        ):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                route = _route_template(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                self._duration.record(
                    elapsed,
                    {
                        "http.request.method": method,
                        "http.route": route,
                        "http.response.status_code": status,
                    },
                )
                emit = log.debug if route in self._quiet_routes else log.info
                emit(
                    "http_request",
                    method=method,
                    path=scope["path"],
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )


_propagator = TraceContextTextMapPropagator()


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            # A caller's id is echoed into logs: keep it short and plain.
            if 0 < len(text) <= 64 and text.replace("-", "").isalnum():
                return text
    return None
