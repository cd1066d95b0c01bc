"""The chat route: authenticate, resolve the model, load the key, forward, record usage.

Every decision comes from memory. The provider call is the only network call on the
path, and a stream is relayed event by event as the provider sends it. A client that
goes away closes the upstream response, which cancels the provider's work.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import structlog
from opentelemetry import metrics, trace
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from services.proxy import errors
from services.proxy.feed import Feed
from services.proxy.keys import KeyCache, KeyUnavailable
from services.proxy.sse import relay_events
from services.proxy.upstream import relay_error
from services.proxy.usage import UsageRecorder
from services.proxy.view import Caller, Route, View
from shared.events.schemas import UsageRecorded
from shared.principal import bearer_token, token_hash
from shared.providers import Endpoint, ProviderAdapter, Usage, adapter_for
from shared.secrets import ProviderKey

log = structlog.get_logger(__name__)
tracer = trace.get_tracer("byom.proxy")


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
    key: ProviderKey
    streamed: bool
    started: float
    usage: Usage | None = None
    status: int = 200


class ChatService:
    def __init__(
        self,
        view: View,
        keys: KeyCache,
        client: httpx.AsyncClient,
        usage: UsageRecorder,
        feed: Feed,
    ) -> None:
        self._view = view
        self._feed = feed
        self._keys = keys
        self._client = client
        self._usage = usage
        self._meters = GenAIMeters()

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

        body = await _json_object(request)
        if isinstance(body, Response):
            return body

        model_name = body["model"]
        route = self._view.route(caller, model_name)
        if not isinstance(route, Route):
            return errors.refused(route, model_name)

        try:
            key = await self._keys.get(route.connection.connection_id)
        except KeyUnavailable as error:
            log.error("provider_key_unavailable", reason=str(error), model=model_name)
            return errors.upstream_unavailable(
                route.connection.name, "its key is unavailable", status=503
            )

        call = Call(
            request_id=request.headers.get("x-request-id") or uuid.uuid4().hex,
            caller=caller,
            route=route,
            adapter=adapter_for(route.connection.provider),
            key=key,
            streamed=bool(body.get("stream")),
            started=time.perf_counter(),
        )
        structlog.contextvars.bind_contextvars(
            workspace_id=caller.workspace_id, user_id=caller.user_id, model=model_name
        )
        if call.streamed:
            return await self._stream(call, body)

        return await self._once(call, body)

    async def _once(self, call: Call, body: dict[str, Any]) -> Response:
        upstream = self._upstream_request(call, body)
        with tracer.start_as_current_span(
            f"chat {call.route.model.name}", kind=trace.SpanKind.CLIENT
        ) as span:
            _describe_span(span, call)
            try:
                response = await self._client.send(upstream)
            except httpx.TimeoutException:
                return self._failed(call, 504, "the request timed out")
            except httpx.TransportError as error:
                return self._failed(call, 502, f"connection failed ({type(error).__name__})")

            call.status = response.status_code
            if response.status_code != 200:
                self._record(call)
                return relay_error(
                    call.route.connection.name,
                    response.status_code,
                    response.content,
                    response.headers.get("retry-after"),
                    call.key,
                )

            try:
                call.usage = call.adapter.usage_from_response(orjson.loads(response.content))
            except (orjson.JSONDecodeError, AttributeError):
                log.warning("upstream_answer_not_json")
            _describe_usage(span, call)
            self._record(call)
            return Response(response.content, status_code=200, media_type="application/json")

    async def _stream(self, call: Call, body: dict[str, Any]) -> Response:
        options = body.get("stream_options") or {}
        client_wants_usage = bool(options.get("include_usage"))
        # Usage is how calls are accounted: ask for it, and hide it if the client did not.
        body["stream_options"] = {**options, "include_usage": True}
        upstream = self._upstream_request(call, body)
        # The span outlives this function: it ends when the last event has been relayed.
        span = tracer.start_span(f"chat {call.route.model.name}", kind=trace.SpanKind.CLIENT)
        _describe_span(span, call)
        span.set_attribute("gen_ai.request.stream", True)
        try:
            response = await self._client.send(upstream, stream=True)
        except httpx.TimeoutException:
            span.end()
            return self._failed(call, 504, "the request timed out")
        except httpx.TransportError as error:
            span.end()
            return self._failed(call, 502, f"connection failed ({type(error).__name__})")

        if response.status_code != 200:
            content = await response.aread()
            await response.aclose()
            call.status = response.status_code
            span.set_attribute("error.type", str(call.status))
            span.end()
            self._record(call)
            return relay_error(
                call.route.connection.name,
                response.status_code,
                content,
                response.headers.get("retry-after"),
                call.key,
            )

        def on_usage(event: dict[str, Any]) -> None:
            call.usage = call.adapter.usage_from_stream_event(event)

        async def events() -> AsyncIterator[bytes]:
            try:
                async for event in relay_events(
                    response.aiter_raw(), on_usage, hide_usage_only_events=not client_wants_usage
                ):
                    yield event
            except httpx.HTTPError as error:
                call.status = 502
                log.warning("upstream_stream_broken", error=type(error).__name__)
            except BaseException:
                # The client went away (cancellation): the provider's work is cancelled below.
                call.status = 499
                raise
            finally:
                await response.aclose()
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

    def _upstream_request(self, call: Call, body: dict[str, Any]) -> httpx.Request:
        body["model"] = call.route.model.upstream_id
        endpoint = Endpoint(call.route.connection.provider, call.route.connection.base_url)
        prepared = call.adapter.chat_request(endpoint, call.key, body)
        return self._client.build_request(
            "POST", prepared.url, headers=prepared.headers, content=prepared.body
        )

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
            status=call.status,
            streamed=call.streamed,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            duration_ms=round(duration_ms, 2),
        )


async def _json_object(request: Request) -> dict[str, Any] | Response:
    """The request body as a JSON object with a model and messages, or a 400 saying why."""
    try:
        body = orjson.loads(await request.body())
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

    return body


def _describe_span(span: trace.Span, call: Call) -> None:
    span.set_attribute("gen_ai.operation.name", "chat")
    span.set_attribute("byom.workspace.id", call.caller.workspace_id)
    span.set_attribute("byom.model.name", call.route.model.name)
    span.set_attribute("gen_ai.provider.name", call.route.connection.provider)
    span.set_attribute("gen_ai.request.model", call.route.model.upstream_id)


def _describe_usage(span: trace.Span, call: Call) -> None:
    if call.usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", call.usage.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", call.usage.output_tokens)
