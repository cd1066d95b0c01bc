"""Wires the catalog: settings, model data, runtime, upstream clients, consumer, scheduler,
routes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from services.catalog import api_aliases, api_install, subscribers
from services.catalog.aliases import Aliases
from services.catalog.api import admin, health, install_errors
from services.catalog.handlers import Catalog
from services.catalog.model_data import ModelData
from services.catalog.offers import Offers
from services.catalog.scheduler import SyncScheduler
from services.catalog.settings import Settings
from services.catalog.tables import metadata
from services.catalog.upstream import KeyvaultKeys, ModelSource
from shared.http import install_error_handlers
from shared.logging import configure_logging
from shared.principal import Introspector
from shared.runtime import Runtime
from shared.service_auth import ServiceSigner
from shared.telemetry import instrument


def create_app() -> FastAPI:
    settings = Settings()
    configure_logging("catalog", settings.log_level, settings.log_json)
    # A broken data file stops the catalog here, before it could list a model unpriced.
    model_data = ModelData.load(
        settings.model_data_file, include_bundled=settings.model_data_include_bundled
    )
    runtime = Runtime(settings, service="catalog", metadata=metadata)
    signer = ServiceSigner(settings.service_secret.get_secret_value().encode())
    # Calls to our own services never go through an outbound proxy; provider calls may.
    services_client = httpx.AsyncClient(timeout=settings.keyvault_timeout_seconds, trust_env=False)
    provider_client = httpx.AsyncClient(timeout=settings.provider_timeout_seconds)
    source = ModelSource(
        KeyvaultKeys(services_client, settings.keyvault_url, signer), provider_client, model_data
    )
    catalog = Catalog(runtime, source, settings.sync_schedule)
    offers = Offers(runtime)
    subscribers.register(runtime, catalog, offers)
    scheduler = SyncScheduler(
        catalog,
        poll_seconds=settings.sync_poll_seconds,
        batch=settings.sync_batch,
        concurrency=settings.sync_concurrency,
        lease_seconds=settings.sync_lease_seconds,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            async with runtime.lifespan():
                if not settings.sync_scheduled:
                    yield
                    return

                async with scheduler.running():
                    yield
        finally:
            await provider_client.aclose()
            await services_client.aclose()

    app = FastAPI(
        title="BYOM catalog",
        summary="The models of each provider connection, and which of them are enabled.",
        lifespan=lifespan,
        openapi_url="/catalog/openapi.json",
        docs_url="/catalog/docs",
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.state.catalog = catalog
    app.state.offers = offers
    app.state.aliases = Aliases(runtime)
    app.state.settings = settings
    app.state.introspector = Introspector(
        services_client, settings.access_url, signer, service="catalog"
    )
    install_error_handlers(app)
    install_errors(app)
    app.state.telemetry = instrument(app, "catalog")
    app.include_router(health)
    app.include_router(admin)
    app.include_router(api_aliases.router)
    app.include_router(api_install.router)
    return app
