"""Wiring the proxy: settings, view, feed, key cache, usage recorder, routes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import nats
import orjson
import structlog
from fastapi import FastAPI, Request
from starlette.responses import Response

from services.proxy import errors
from services.proxy.chat import ChatService
from services.proxy.feed import Feed
from services.proxy.keys import KeyCache
from services.proxy.settings import Settings
from services.proxy.usage import UsageRecorder
from services.proxy.view import Caller, Model, Route, View
from shared.events import schemas as ev
from shared.events.envelope import Envelope
from shared.events.stream import ensure_stream
from shared.logging import configure_logging
from shared.service_auth import ServiceSigner
from shared.telemetry import instrument

log = structlog.get_logger(__name__)

_EVICTING_EVENTS = frozenset(
    {ev.ProviderKeyRotated.event_type(), ev.ProviderDisconnected.event_type()}
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging("proxy", settings.log_level, settings.log_json)
    view = View()
    signer = ServiceSigner(settings.service_secret.get_secret_value().encode())
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(
            settings.upstream_read_timeout_seconds,
            connect=settings.upstream_connect_timeout_seconds,
        ),
        limits=httpx.Limits(
            max_connections=settings.upstream_max_connections,
            max_keepalive_connections=settings.upstream_max_connections,
        ),
        # Provider URLs are set by admins; the proxy never follows a redirect elsewhere.
        follow_redirects=False,
    )
    keys = KeyCache(client, settings.keyvault_url, signer)

    def on_event(envelope: Envelope) -> None:
        if envelope.type in _EVICTING_EVENTS:
            keys.evict(str(envelope.data["connection_id"]))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Reconnect forever: the feed watchdog decides when the view is too old to serve.
        nc = await nats.connect(
            settings.nats_url, name="byom-proxy", max_reconnect_attempts=-1, reconnect_time_wait=1
        )
        js = nc.jetstream()
        await ensure_stream(
            js,
            settings.nats_stream,
            settings.subject_prefix,
            replicas=settings.nats_stream_replicas,
        )
        usage = UsageRecorder(
            js,
            stream=settings.nats_stream,
            subject_prefix=settings.subject_prefix,
            capacity=settings.usage_queue_capacity,
        )
        feed = Feed(
            nc,
            view,
            stream=settings.nats_stream,
            subject_prefix=settings.subject_prefix,
            stale_after_seconds=settings.feed_stale_after_seconds,
            on_event=on_event,
        )
        await feed.start()
        await feed.wait_ready(settings.feed_ready_timeout_seconds)
        usage.start()
        app.state.feed = feed
        app.state.chat = ChatService(view, keys, client, usage, feed)
        log.info("service_started", events_applied=feed.applied)
        try:
            yield
        finally:
            await feed.stop()
            await usage.stop()
            await nc.drain()
            await client.aclose()
            log.info(
                "service_stopped", usage_published=usage.published, usage_dropped=usage.dropped
            )

    app = FastAPI(
        title="BYOM gateway: model API",
        lifespan=lifespan,
        openapi_url="/proxy/openapi.json",
        docs_url="/proxy/docs",
        redoc_url=None,
    )
    app.state.telemetry = instrument(app, "proxy")

    @app.post("/v1/chat/completions", tags=["model API"])
    async def chat_completions(request: Request) -> Response:
        """OpenAI's chat completions, plain or streamed, for any model the caller may use."""
        chat: ChatService = request.app.state.chat
        return await chat.complete(request)

    @app.get("/v1/models", tags=["model API"])
    async def list_models(request: Request) -> Response:
        """The models the caller may use, in OpenAI's list format."""
        chat: ChatService = request.app.state.chat
        stale = chat.refusal_while_stale()
        if stale is not None:
            return stale

        caller = chat.authenticate(request)
        if caller is None:
            return errors.unauthenticated()

        data = [_model_object(m) for m in view.usable_models(caller)]
        return Response(
            orjson.dumps({"object": "list", "data": data}), media_type="application/json"
        )

    @app.get("/v1/models/{model_name:path}", tags=["model API"])
    async def get_model(model_name: str, request: Request) -> Response:
        """One model the caller may use."""
        chat: ChatService = request.app.state.chat
        stale = chat.refusal_while_stale()
        if stale is not None:
            return stale

        caller: Caller | None = chat.authenticate(request)
        if caller is None:
            return errors.unauthenticated()

        route = view.route(caller, model_name)
        if not isinstance(route, Route):
            return errors.refused(route, model_name)

        return Response(orjson.dumps(_model_object(route.model)), media_type="application/json")

    @app.get("/proxy/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/proxy/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        feed: Feed | None = getattr(request.app.state, "feed", None)
        ready = feed is not None and feed.ready
        if feed is not None and feed.stale:
            body = {"status": "feed_lost", "lost_for_seconds": round(feed.lost_for_seconds, 1)}
        else:
            body = {"status": "ready" if ready else "catching_up"}
        return Response(
            orjson.dumps(body), status_code=200 if ready else 503, media_type="application/json"
        )

    return app


def _model_object(model: Model) -> dict[str, object]:
    return {
        "id": model.name,
        "object": "model",
        "created": model.created,
        "owned_by": model.provider,
    }
