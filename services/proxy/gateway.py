"""What every door does: admit a call, forward it to its provider, account for it.

Admission is the same on every door, so the access decision cannot differ between
them: the view must be fresh, the token known, the body within the size limit and a
JSON object naming a model, the model granted to the caller, and the connection's key
at hand. Everything comes from memory but the key's first fetch.

Forwarding sends the request the door prepared and hands the provider's answer to the
door's :class:`~services.proxy.relays.Reply`. A stream is relayed read by read, as the
provider sends it; a client that goes away closes the upstream response, which cancels
the provider's work. A plain call is abandoned the same way when its client leaves.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import orjson
import structlog
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from services.proxy import upstream
from services.proxy.calls import Call, CallRecorder, end_span, start_span, tracing
from services.proxy.errors import Dialect
from services.proxy.feed import Feed
from services.proxy.http1 import UpstreamClient, UpstreamResponse
from services.proxy.keys import KeyCache, KeyUnavailable
from services.proxy.relays import Reply, StreamRelay
from services.proxy.usage import UsageRecorder
from services.proxy.view import Caller, Route, View
from shared.principal import bearer_token, token_hash
from shared.providers import (
    ChatUpstreamRequest,
    UnexpectedResponse,
    UnsupportedFeature,
    UpstreamFailure,
    adapter_for,
)

log = structlog.get_logger(__name__)
_propagator = TraceContextTextMapPropagator()
_T = TypeVar("_T")
# The most a provider may send without completing an event (see Gateway._relayed).
MAX_EVENT_BYTES = 16 * 1024 * 1024

# A door's own checks of a parsed body: a refusal, or None when the body will do.
BodyCheck = Callable[[dict[str, Any], Dialect], Response | None]


@dataclass(frozen=True, slots=True)
class Admitted:
    """A call the proxy will carry: who, to which model, with which body."""

    call: Call
    body: dict[str, Any]
    request: Request
    trace_parent: Any


class Gateway:
    def __init__(
        self,
        view: View,
        keys: KeyCache,
        providers: UpstreamClient,
        usage: UsageRecorder,
        feed: Feed,
        *,
        max_body_bytes: int,
    ) -> None:
        self._view = view
        self._feed = feed
        self._keys = keys
        self._providers = providers
        self._recorder = CallRecorder(usage)
        self._max_body_bytes = max_body_bytes

    def flush(self) -> None:
        """Account for the calls finished last (metrics, log lines): the process is stopping."""
        self._recorder.flush()

    def refusal_while_stale(self, dialect: Dialect) -> Response | None:
        """A 503 while the view cannot be trusted, before anything else is looked at."""
        if self._feed.stale:
            return dialect.feed_lost(self._feed.lost_for_seconds)

        return None

    def authenticate(self, request: Request) -> Caller | None:
        # Anthropic's clients send the token as x-api-key, OpenAI's as a bearer token.
        token = bearer_token(request.headers.get("authorization"), request.headers.get("x-api-key"))
        if token is None:
            return None

        return self._view.authenticate(token_hash(token.reveal()))

    async def admit(
        self, request: Request, dialect: Dialect, operation: str, check: BodyCheck
    ) -> Admitted | Response:
        stale = self.refusal_while_stale(dialect)
        if stale is not None:
            return stale

        caller = self.authenticate(request)
        if caller is None:
            return dialect.unauthenticated()

        body = await self._json_body(request, dialect)
        if isinstance(body, Response):
            return body

        refusal = check(body, dialect)
        if refusal is not None:
            return refusal

        model_name = body["model"]
        route = self._view.route(caller, model_name)
        if not isinstance(route, Route):
            return dialect.refused(route, model_name)

        try:
            credential = await self._keys.get(route.connection.connection_id)
        except KeyUnavailable as error:
            log.error("provider_key_unavailable", reason=str(error), model=model_name)
            return dialect.key_unavailable(route.connection.name)

        structlog.contextvars.bind_contextvars(
            workspace_id=caller.workspace_id, user_id=caller.user_id, model=model_name
        )
        call = Call(
            # Our own id: a caller's x-request-id is a correlation hint, not an identity.
            request_id=uuid.uuid4().hex,
            caller=caller,
            route=route,
            adapter=adapter_for(credential.endpoint.kind),
            credential=credential,
            dialect=dialect,
            operation=operation,
            streamed=body.get("stream") is True,
        )
        parent = None
        if tracing():
            parent = _propagator.extract({"traceparent": request.headers.get("traceparent", "")})
        return Admitted(call, body, request, parent)

    def unsupported(self, call: Call, error: UnsupportedFeature) -> Response:
        """A request the provider cannot carry: refused before any upstream call."""
        log.info("request_unsupported", field=error.field, provider_kind=call.adapter.kind)
        return call.dialect.unsupported(error)

    def answered_here(self, call: Call, payload: dict[str, Any]) -> Response:
        """An answer the proxy gives itself (a token estimate), accounted like any call."""
        self._recorder.record(call)
        return Response(orjson.dumps(payload), media_type="application/json")

    async def forward(
        self, admitted: Admitted, prepared: ChatUpstreamRequest, reply: Reply
    ) -> Response:
        if admitted.call.streamed:
            return await self._stream(admitted, prepared, reply)

        # The body is read, so the only message left to receive is the client leaving.
        answer = await cancel_on_disconnect(admitted.request, self._once(admitted, prepared, reply))
        return answer if answer is not None else Response(status_code=499)

    async def _once(
        self, admitted: Admitted, prepared: ChatUpstreamRequest, reply: Reply
    ) -> Response:
        call = admitted.call
        span = start_span(call, admitted.trace_parent)
        try:
            with trace.use_span(span, end_on_exit=False):
                return await self._exchange(call, prepared, reply)
        except (asyncio.CancelledError, Exception) as error:
            # The client left (499), or the model API's catch-all answers a 500; either
            # way the provider was called.
            call.status = 499 if isinstance(error, asyncio.CancelledError) else 500
            self._recorder.record(call)
            raise
        finally:
            end_span(span, call)

    async def _exchange(self, call: Call, prepared: ChatUpstreamRequest, reply: Reply) -> Response:
        try:
            response = await upstream.send(self._providers, prepared)
            async with response:
                content = await response.read()
        except upstream.TRANSPORT_ERRORS as error:
            return self._failed(call, upstream.transport_failure(call.provider, error))
        except ValueError:
            return _unsendable(call)

        return self._answered(call, response, content, reply)

    def _answered(
        self, call: Call, response: UpstreamResponse, content: bytes, reply: Reply
    ) -> Response:
        if not _succeeded(response):
            return self._refused(call, response, content)

        if _compressed(response):
            return self._failed(call, upstream.compressed(call.provider))

        try:
            body, call.usage = reply.answer(content)
        except UnexpectedResponse as error:
            return self._failed(call, upstream.bad_answer(error))
        except Exception:
            # An answer shaped so oddly that the adapter tripped over it: the provider's.
            log.exception("upstream_answer_unreadable", provider_kind=call.adapter.kind)
            return self._failed(call, upstream.unreadable(call.provider))

        self._recorder.record(call)
        return Response(body, status_code=200, media_type="application/json")

    async def _stream(
        self, admitted: Admitted, prepared: ChatUpstreamRequest, reply: Reply
    ) -> Response:
        call = admitted.call
        # The span outlives this function: it ends when the last event has been relayed.
        span = start_span(call, admitted.trace_parent)
        # A model may think for a long while before its first byte: a client that leaves
        # meanwhile cancels the request then, not only once the stream has begun.
        opened: UpstreamResponse | Response | None = None
        try:
            opened = await cancel_on_disconnect(admitted.request, self._open_stream(call, prepared))
        except Exception:
            call.status = 500
            raise
        finally:
            # None: the client left, the server is stopping, or opening failed unexpectedly.
            if opened is None:
                if call.status == 200:
                    call.status = 499
                end_span(span, call)
                self._recorder.record(call)
        if opened is None:
            return Response(status_code=499)
        if isinstance(opened, Response):
            end_span(span, call)
            return opened

        response = opened
        relay = reply.relay()

        async def events() -> AsyncGenerator[bytes, None]:
            # A client that leaves is finish's to account for; only a failure is told here.
            try:
                async for piece in self._relayed(call, response, relay):
                    yield piece
            except Exception:
                call.status = 500
                log.exception("stream_relay_failed")
                raise

        def finish(completed: bool) -> None:
            """Runs once the response is over, whether or not a piece of it was sent."""
            if not completed and call.status == 200:
                # The client left, possibly before the first piece was asked for.
                call.status = 499
            # Back to the pool if the provider's answer came whole; otherwise the
            # connection is dropped, which stops the provider's work too.
            response.release()
            call.usage = relay.usage
            end_span(span, call)
            self._recorder.record(call)

        return EventStream(events(), finish)

    async def _open_stream(
        self, call: Call, prepared: ChatUpstreamRequest
    ) -> UpstreamResponse | Response:
        """The provider's streaming response once its headers arrive, or the refusal to send."""
        try:
            response = await upstream.send(self._providers, prepared)
            if _succeeded(response):
                if not _compressed(response):
                    return response
                response.close()
                return self._failed(call, upstream.compressed(call.provider))

            async with response:
                content = await response.read()
            return self._refused(call, response, content)
        except upstream.TRANSPORT_ERRORS as error:
            return self._failed(call, upstream.transport_failure(call.provider, error))
        except ValueError:
            return _unsendable(call)

    async def _relayed(
        self, call: Call, response: UpstreamResponse, relay: StreamRelay
    ) -> AsyncIterator[bytes]:
        """Each provider read, relayed as soon as it arrives; then the stream's end."""
        # Bytes read since something was last passed on: a provider that never finishes an
        # event would otherwise be held in memory without limit.
        unsent = 0
        try:
            async for data in response.chunks():
                out = relay.feed(data)
                if out:
                    unsent = 0
                    yield out
                    continue
                unsent += len(data)
                if unsent > MAX_EVENT_BYTES:
                    tail = relay.broken(upstream.oversized_event(call.provider, MAX_EVENT_BYTES))
                    break
            else:
                tail = relay.close()
        except upstream.TRANSPORT_ERRORS as error:
            log.warning("upstream_stream_broken", error=type(error).__name__)
            tail = relay.broken(upstream.transport_failure(call.provider, error))

        if relay.failure is not None:
            # The status the client would have had, had the failure come before the stream.
            call.status = call.dialect.failure(relay.failure, call.provider).status_code
            log.warning(
                "upstream_stream_failed",
                category=relay.failure.category,
                upstream_status=relay.failure.status,
            )
        if tail:
            yield tail

    def _refused(self, call: Call, response: UpstreamResponse, content: bytes) -> Response:
        key = call.credential.key
        failure = upstream.refusal(call.adapter, response.status, content, response.headers, key)
        return self._failed(call, failure)

    def _failed(self, call: Call, failure: UpstreamFailure) -> Response:
        answer = call.dialect.failure(failure, call.provider)
        call.status = answer.status_code
        self._recorder.record(call)
        log.warning(
            "upstream_failed",
            category=failure.category,
            upstream_status=failure.status,
            status=call.status,
        )
        return answer

    async def _json_body(self, request: Request, dialect: Dialect) -> dict[str, Any] | Response:
        """The request body as a JSON object naming a model, or a refusal saying why."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body_bytes:
            return dialect.too_large(self._max_body_bytes)

        raw = bytearray()
        async for piece in request.stream():
            raw += piece
            if len(raw) > self._max_body_bytes:
                return dialect.too_large(self._max_body_bytes)

        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return dialect.bad_request("The request body is not valid JSON.")

        if not isinstance(body, dict):
            return dialect.bad_request("The request body must be a JSON object.")

        if not isinstance(body.get("model"), str) or not body["model"]:
            return dialect.bad_request("'model' is required and must be a string.", param="model")

        if "stream" in body and body["stream"] is not None and not isinstance(body["stream"], bool):
            return dialect.bad_request("'stream' must be a boolean.", param="stream")

        return body


def _unsendable(call: Call) -> Response:
    """A request that cannot be written as HTTP: refused, and nothing was sent."""
    log.warning("request_unsendable", provider_kind=call.adapter.kind)
    failure = UpstreamFailure(
        "the request cannot be written as HTTP: a header or the model's address holds a "
        "character HTTP does not allow",
        provider=call.provider,
        status=400,
        category="invalid_request",
    )
    return call.dialect.failure(failure, call.provider)


def _compressed(response: UpstreamResponse) -> bool:
    """Whether the provider compressed its answer, though asked not to (it is not relayed)."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    return encoding not in ("", "identity")


def _succeeded(response: UpstreamResponse) -> bool:
    return 200 <= response.status < 300


class EventStream(Response):
    """A server-sent event stream, each piece sent as the relay hands it over.

    Starlette's StreamingResponse would do, but under this ASGI server it runs a task
    group of two tasks per stream to notice the client leaving, which costs the first
    token a good part of a millisecond. Here the stream is sent from the calling task and
    one watcher cancels it if the client goes; the pieces' generator is closed and
    ``finish`` called either way (with whether the response went out whole), which closes
    the provider's response and accounts for the call.
    """

    _HEADERS: Final = [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
    ]

    def __init__(self, pieces: AsyncGenerator[bytes, None], finish: Callable[[bool], None]) -> None:
        self.status_code = 200
        self.background = None
        self.raw_headers = list(self._HEADERS)
        self._pieces = pieces
        self._finish = finish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        watcher = asyncio.ensure_future(_cancel_when_gone(receive, task))
        completed = False
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for piece in self._pieces:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            completed = True
        except asyncio.CancelledError:
            if not watcher.done() or watcher.cancelled():
                raise
            # The client left; there is nobody to finish the response for.
            task.uncancel()
        finally:
            watcher.cancel()
            # Closing a generator never started runs none of its code: whatever must
            # happen at the end (the provider's connection, the accounts) is in finish.
            await self._pieces.aclose()
            self._finish(completed)


async def cancel_on_disconnect(request: Request, work: Awaitable[_T]) -> _T | None:
    """The work's result, or None if the client left first (the work is then cancelled).

    The work runs in the calling task; a watcher task waits for the client to leave and
    cancels it then. One task per call, and no wait on two futures: this is on every call.
    """
    task = asyncio.current_task()
    assert task is not None
    watcher = asyncio.ensure_future(_cancel_when_gone(request.receive, task))
    try:
        return await work
    except asyncio.CancelledError:
        if not watcher.done() or watcher.cancelled():
            # Cancelled from elsewhere (the server is stopping): not ours to swallow.
            raise
        task.uncancel()
        return None
    finally:
        watcher.cancel()


async def _cancel_when_gone(receive: Receive, task: asyncio.Task[Any]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            task.cancel()
            return
