"""Wiring of the access service: settings, runtime, subscribers, routes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from services.access import subscribers
from services.access.api import health, install_access_errors, internal, router
from services.access.api_dialog import dialog
from services.access.auth import TokenDirectory
from services.access.settings import Settings
from services.access.tables import metadata
from shared.http import install_error_handlers
from shared.logging import configure_logging
from shared.runtime import Runtime
from shared.service_auth import ServiceSigner
from shared.telemetry import instrument


def create_app() -> FastAPI:
    settings = Settings()
    configure_logging("access", settings.log_level, settings.log_json)
    runtime = Runtime(settings, service="access", metadata=metadata)
    subscribers.register(runtime)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with runtime.lifespan():
            yield

    app = FastAPI(
        title="BYOM access",
        summary="Workspaces, members, groups, gateway tokens and model access rules.",
        lifespan=lifespan,
        docs_url="/access/docs",
        openapi_url="/access/openapi.json",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.runtime = runtime
    # shared.principal's CurrentPrincipal and AdminPrincipal ask this object who a token is.
    app.state.introspector = TokenDirectory(runtime.engine)
    service_secret = settings.service_secret.get_secret_value()
    # Only development may run without a service secret; internal routes then refuse all.
    app.state.signer = ServiceSigner(service_secret.encode()) if service_secret else None

    install_error_handlers(app)
    install_access_errors(app)
    app.state.telemetry = instrument(app, "access")
    app.include_router(health)
    app.include_router(router)
    app.include_router(dialog)
    app.include_router(internal)
    return app
