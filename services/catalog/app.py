"""Wires the catalog: settings, runtime, upstream clients, consumer, routes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from services.catalog import subscribers
from services.catalog.api import admin, health, install_errors
from services.catalog.handlers import Catalog
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
    runtime = Runtime(settings, service="catalog", metadata=metadata)
    signer = ServiceSigner(settings.service_secret.get_secret_value().encode())
    # Calls to our own services never go through an outbound proxy; provider calls may.
    services_client = httpx.AsyncClient(timeout=settings.keyvault_timeout_seconds, trust_env=False)
    provider_client = httpx.AsyncClient(timeout=settings.provider_timeout_seconds)
    source = ModelSource(
        KeyvaultKeys(services_client, settings.keyvault_url, signer), provider_client
    )
    catalog = Catalog(runtime, source)
    subscribers.register(runtime, catalog)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            async with runtime.lifespan():
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
    app.state.introspector = Introspector(
        services_client, settings.access_url, signer, service="catalog"
    )
    install_error_handlers(app)
    install_errors(app)
    app.state.telemetry = instrument(app, "catalog")
    app.include_router(health)
    app.include_router(admin)
    return app
