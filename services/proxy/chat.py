"""The chat route: authenticate, resolve the model, load the key, forward, record usage.

Every decision comes from memory. The provider call is the only network call on the
path, and a stream is relayed event by event as the provider sends it. A client that
goes away closes the upstream response, which cancels the provider's work.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import structlog
from opentelemetry import metrics, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from services.proxy import errors
from services.proxy.feed import Feed
from services.proxy.keys import Credential, KeyCache, KeyUnavailable
from services.proxy.sse import relay_events
from services.proxy.upstream import relay_error
from services.proxy.usage import UsageRecorder
from services.proxy.view import Caller, Route, View
from shared.events.schemas import UsageRecorded
from shared.principal import bearer_token, token_hash
from shared.providers import ProviderAdapter, Usage, adapter_for

log = structlog.get_logger(__name__)
tracer = trace.get_tracer("byom.proxy")
_propagator = TraceContextTextMapPropagator()


class GenAIMeters:
    """The GenAI semantic conventions' client metrics, for calls to providers."""

    def __init__(self) -> None:
        meter = metrics.get_meter("byom.proxy")
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="Duration of provider calls."
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Tokens used per call."
        )

    def record(self, call: Call, seconds: float) -> None:
        attributes: dict[str, str | int] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": call.route.connection.provider,
            "gen_ai.request.model": call.route.model.upstream_id,
        }
        if call.status != 200:
            attributes["error.type"] = str(call.status)
        self.duration.record(seconds, attributes)
        if call.usage is not None:
            self.tokens.record(
                call.usage.input_tokens, {**attributes, "gen_ai.token.type": "input"}
            )
            self.tokens.record(
                call.usage.output_tokens, {**attributes, "gen_ai.token.type": "output"}
            )


@dataclass(slots=True)
class Call:
    """One chat call on its way through the proxy."""

    request_id: str
    caller: Caller
    route: Route
    adapter: ProviderAdapter
    credential: Credential
    streamed: bool
    started: float
    usage: Usage | None = None
    status: int = 200


class ChatService:
    def __init__(
        self,
        view: View,
        keys: KeyCache,
        session: aiohttp.ClientSession,
        usage: UsageRecorder,
        feed: Feed,
        *,
        max_body_bytes: int,
    ) -> None:
        self._view = view
        self._feed = feed
        self._keys = keys
        self._session = session
        self._usage = usage
        self._meters = GenAIMeters()
        self._max_body_bytes = max_body_bytes

    def refusal_while_stale(self) -> Response | None:
        """A 503 while the view cannot be trusted, before anything else is looked at."""
        if self._feed.stale:
            return errors.feed_lost(self._feed.lost_for_seconds)

        return None

    def authenticate(self, request: Request) -> Caller | None:
        token = bearer_token(request.headers.get("authorization"), request.headers.get("x-api-key"))
        if token is None:
            return None

        return self._view.authenticate(token_hash(token.reveal()))

    async def complete(self, request: Request) -> Response:
        stale = self.refusal_while_stale()
        if stale is not None:
            return stale

        caller = self.authenticate(request)
        if caller is None:
            return errors.unauthenticated()

        body = await self._json_body(request)
        if isinstance(body, Response):
            return body

        model_name = body["model"]
        route = self._view.route(caller, model_name)
        if not isinstance(route, Route):
            return errors.refused(route, model_name)

        try:
            credential = await self._keys.get(route.connection.connection_id)
        except KeyUnavailable as error:
            log.error("provider_key_unavailable", reason=str(error), model=model_name)
            return errors.upstream_unavailable(
                route.connection.name, "its key is unavailable", status=503
            )

        call = Call(
            # Our own id: a caller's x-request-id is a correlation hint, not an identity.
            request_id=uuid.uuid4().hex,
            caller=caller,
            route=route,
            adapter=adapter_for(credential.endpoint.kind),
            credential=credential,
            streamed=body.get("stream") is True,
            started=time.perf_counter(),
        )
        structlog.contextvars.bind_contextvars(
            workspace_id=caller.workspace_id, user_id=caller.user_id, model=model_name
        )
        parent = _propagator.extract({"traceparent": request.headers.get("traceparent", "")})
        if call.streamed:
            return await self._stream(call, body, parent)

        # The body is read, so the only message left to receive is the client leaving.
        work = asyncio.ensure_future(self._once(call, body, parent))
        answer = await cancel_on_disconnect(request, work)
        return answer if answer is not None else Response(status_code=499)

    async def _once(self, call: Call, body: dict[str, Any], parent: Any) -> Response:
        url, headers, payload = self._upstream_request(call, body)
        with tracer.start_as_current_span(
            f"chat {call.route.model.name}", context=parent, kind=trace.SpanKind.CLIENT
        ) as span:
            _describe_span(span, call)
            try:
                async with self._session.post(url, data=payload, headers=headers) as response:
                    content = await response.read()
                    status = response.status
                    retry_after = response.headers.get("retry-after")
            except asyncio.CancelledError:
                call.status = 499
                self._record(call)
                raise
            except TimeoutError:
                return self._failed(call, 504, "the request timed out")
            except aiohttp.ClientError as error:
                return self._failed(call, 502, f"connection failed ({type(error).__name__})")

            call.status = status
            if status != 200:
                span.set_attribute("error.type", str(status))
                self._record(call)
                return relay_error(
                    call.route.connection.name, status, content, retry_after, call.credential.key
                )

            try:
                call.usage = call.adapter.usage_from_response(orjson.loads(content))
            except (orjson.JSONDecodeError, AttributeError):
                log.warning("upstream_answer_not_json")
            _describe_usage(span, call)
            self._record(call)
            return Response(content, status_code=200, media_type="application/json")

    async def _stream(self, call: Call, body: dict[str, Any], parent: Any) -> Response:
        options = body.get("stream_options") or {}
        client_wants_usage = options.get("include_usage") is True
        # Usage is how calls are accounted: ask for it, and hide it if the client did not.
        body["stream_options"] = {**options, "include_usage": True}
        url, headers, payload = self._upstream_request(call, body)
        # The span outlives this function: it ends when the last event has been relayed.
        span = tracer.start_span(
            f"chat {call.route.model.name}", context=parent, kind=trace.SpanKind.CLIENT
        )
        _describe_span(span, call)
        span.set_attribute("gen_ai.request.stream", True)
        try:
            response = await self._session.post(url, data=payload, headers=headers)
        except TimeoutError:
            span.end()
            return self._failed(call, 504, "the request timed out")
        except aiohttp.ClientError as error:
            span.end()
            return self._failed(call, 502, f"connection failed ({type(error).__name__})")

        if response.status != 200:
            content = await response.read()
            response.release()
            call.status = response.status
            span.set_attribute("error.type", str(call.status))
            span.end()
            self._record(call)
            return relay_error(
                call.route.connection.name,
                response.status,
                content,
                response.headers.get("retry-after"),
                call.credential.key,
            )

        def on_usage(event: dict[str, Any]) -> None:
            call.usage = call.adapter.usage_from_stream_event(event)

        async def events() -> AsyncIterator[bytes]:
            try:
                async for event in relay_events(
                    response.content.iter_any(),
                    on_usage,
                    hide_usage_only_events=not client_wants_usage,
                ):
                    yield event
            except (aiohttp.ClientError, TimeoutError) as error:
                call.status = 502
                log.warning("upstream_stream_broken", error=type(error).__name__)
            except BaseException:
                # The client went away (cancellation): the provider's work is cancelled below.
                call.status = 499
                raise
            finally:
                # Closing (not releasing) drops the connection, so the provider stops too.
                response.close()
                _describe_usage(span, call)
                if call.status != 200:
                    span.set_attribute("error.type", str(call.status))
                span.end()
                self._record(call)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    def _upstream_request(
        self, call: Call, body: dict[str, Any]
    ) -> tuple[str, dict[str, str], bytes]:
        body["model"] = call.route.model.upstream_id
        prepared = call.adapter.chat_request(call.credential.endpoint, call.credential.key, body)
        # Streams are relayed as the provider's bytes: they must not arrive compressed.
        headers = {**prepared.headers, "Accept-Encoding": "identity"}
        return prepared.url, headers, prepared.body

    def _failed(self, call: Call, status: int, reason: str) -> Response:
        call.status = status
        self._record(call)
        log.warning("upstream_unreachable", status=status, reason=reason)
        return errors.upstream_unavailable(call.route.connection.name, reason, status=status)

    def _record(self, call: Call) -> None:
        usage = call.usage or Usage()
        seconds = time.perf_counter() - call.started
        duration_ms = seconds * 1000
        self._meters.record(call, seconds)
        self._usage.record(
            UsageRecorded(
                request_id=call.request_id,
                user_id=call.caller.user_id,
                token_id=call.caller.token_id,
                model_id=call.route.model.model_id,
                model_name=call.route.model.name,
                connection_id=call.route.connection.connection_id,
                provider=call.route.connection.provider,
                operation="chat",
                streamed=call.streamed,
                status=call.status,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_input_tokens=usage.cached_input_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                duration_ms=round(duration_ms, 2),
            ),
            workspace_id=call.caller.workspace_id,
            actor_id=call.caller.user_id,
        )
        log.info(
            "chat_call",
            request_id=call.request_id,
            status=call.status,
            streamed=call.streamed,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            duration_ms=round(duration_ms, 2),
        )

    async def _json_body(self, request: Request) -> dict[str, Any] | Response:
        """The request body as a chat request with a model and messages, or a 400 saying why."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body_bytes:
            return errors.too_large(self._max_body_bytes)

        raw = bytearray()
        async for piece in request.stream():
            raw += piece
            if len(raw) > self._max_body_bytes:
                return errors.too_large(self._max_body_bytes)

        return _chat_request(bytes(raw))


def _chat_request(raw: bytes) -> dict[str, Any] | Response:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return errors.bad_request("The request body is not valid JSON.")

    if not isinstance(body, dict):
        return errors.bad_request("The request body must be a JSON object.")

    if not isinstance(body.get("model"), str) or not body["model"]:
        return errors.bad_request("'model' is required and must be a string.", param="model")

    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return errors.bad_request(
            "'messages' is required and must be a non-empty array.", param="messages"
        )

    if "stream" in body and body["stream"] is not None and not isinstance(body["stream"], bool):
        return errors.bad_request("'stream' must be a boolean.", param="stream")

    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        return errors.bad_request("'stream_options' must be an object.", param="stream_options")

    return body


def _describe_span(span: trace.Span, call: Call) -> None:
    span.set_attribute("gen_ai.operation.name", "chat")
    span.set_attribute("byom.workspace.id", call.caller.workspace_id)
    span.set_attribute("byom.model.name", call.route.model.name)
    span.set_attribute("byom.request.id", call.request_id)
    span.set_attribute("gen_ai.provider.name", call.route.connection.provider)
    span.set_attribute("gen_ai.request.model", call.route.model.upstream_id)


def _describe_usage(span: trace.Span, call: Call) -> None:
    if call.usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", call.usage.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", call.usage.output_tokens)


async def cancel_on_disconnect(request: Request, work: asyncio.Task[Response]) -> Response | None:
    """The work's response, or None if the client left first (the work is then cancelled)."""
    disconnected = asyncio.ensure_future(_disconnect(request))
    done, _ = await asyncio.wait({work, disconnected}, return_when=asyncio.FIRST_COMPLETED)
    if work in done:
        disconnected.cancel()
        return work.result()

    work.cancel()
    return None


async def _disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
