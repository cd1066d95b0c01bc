"""Wiring the proxy: settings, view, feed, key cache, usage recorder, gateway, routes."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

import httpx
import nats
import orjson
import structlog
from fastapi import FastAPI, Request
from starlette.responses import Response

from services.proxy.feed import Feed
from services.proxy.gateway import Gateway
from services.proxy.http1 import UpstreamClient
from services.proxy.keys import KeyCache
from services.proxy.routes import ModelAPI, doors
from services.proxy.settings import Settings
from services.proxy.usage import UsageRecorder
from services.proxy.view import View
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


def create_app(settings: Settings | None = None) -> ModelAPI:
    settings = settings or Settings()
    configure_logging("proxy", settings.log_level, settings.log_json)
    view = View()
    signer = ServiceSigner(settings.service_secret.get_secret_value().encode())
    # keyvault is asked once per connection, off the hot path; httpx is plenty there.
    keyvault_client = httpx.AsyncClient(timeout=10.0, trust_env=False)
    keys = KeyCache(keyvault_client, settings.keyvault_url, signer)

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
        usage.register_metrics()
        usage.start()
        # What start-up made (modules, the view as first built) lives as long as the process.
        # Frozen out of the collector's sight, it is not walked by every full collection,
        # which otherwise stalls the event loop for tens of milliseconds under load.
        gc.collect()
        gc.freeze()
        providers = provider_client(settings)
        app.state.feed = feed
        gateway = Gateway(
            view, keys, providers, usage, feed, max_body_bytes=settings.max_body_bytes
        )
        app.state.gateway = gateway
        app.state.doors = doors(gateway)
        log.info("service_started", events_applied=feed.applied)
        try:
            yield
        finally:
            gateway.flush()
            await feed.stop()
            await usage.stop()
            await nc.drain()
            await providers.close()
            await keyvault_client.aclose()
            log.info(
                "service_stopped", usage_published=usage.published, usage_dropped=usage.dropped
            )

    app = FastAPI(
        title="BYOM gateway: proxy",
        summary="Health and metrics of the model API; the model API itself is OpenAI's and "
        "Anthropic's.",
        lifespan=lifespan,
        openapi_url="/proxy/openapi.json",
        docs_url="/proxy/docs",
        redoc_url=None,
    )
    app.state.telemetry = instrument(app, "proxy")

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

    return ModelAPI(app, view)


def provider_client(settings: Settings) -> UpstreamClient:
    """One client for every provider call of this process, a keep-alive pool per provider."""
    return UpstreamClient(
        max_connections_per_host=settings.upstream_max_connections,
        connect_timeout=settings.upstream_connect_timeout_seconds,
        read_timeout=settings.upstream_read_timeout_seconds,
    )
