"""Building keyvault's app: settings, keyring, runtime, clients and routes, wired once."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Final

import httpx
from fastapi import FastAPI

from services.keyvault.api import (
    admin,
    health,
    install,
    install_keyvault_errors,
    internal,
    operator,
)
from services.keyvault.cipher import EnvelopeCipher
from services.keyvault.destinations import DestinationPolicy
from services.keyvault.handlers import Handlers
from services.keyvault.repository import ConnectionRepository
from services.keyvault.rewrapping import Rewrapper
from services.keyvault.settings import Settings
from services.keyvault.tables import define_tables
from shared.http import install_error_handlers
from shared.logging import configure_logging
from shared.principal import Introspector
from shared.runtime import Runtime
from shared.service_auth import ServiceSigner
from shared.telemetry import instrument

SERVICE: Final = "keyvault"
_ACCESS_TIMEOUT_SECONDS: Final = 5.0


def create_app() -> FastAPI:
    """The keyvault app; raises KeyringInvalid rather than start without a usable keyring."""
    settings = Settings()
    keyring = settings.load_keyring()
    configure_logging(SERVICE, settings.log_level, settings.log_json)
    # httpx logs each request's full URL; the provider adapter logs every call by host instead.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)

    tables = define_tables()
    runtime = Runtime(settings, service=SERVICE, metadata=tables.metadata)
    signer = ServiceSigner(settings.service_secret.get_secret_value().encode())
    # trust_env off: a proxy variable in the environment must never see a key or a token.
    access_client = httpx.AsyncClient(timeout=_ACCESS_TIMEOUT_SECONDS, trust_env=False)
    provider_client = httpx.AsyncClient(
        timeout=settings.provider_timeout_seconds, trust_env=False, follow_redirects=False
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            async with runtime.lifespan():
                yield
        finally:
            await provider_client.aclose()
            await access_client.aclose()

    app = FastAPI(
        title="BYOM keyvault",
        summary="Provider connections and the custody of their keys.",
        lifespan=lifespan,
        docs_url=f"/{SERVICE}/docs",
        openapi_url=f"/{SERVICE}/openapi.json",
        redoc_url=None,
    )
    repository = ConnectionRepository(tables)
    cipher = EnvelopeCipher(keyring)
    app.state.runtime = runtime
    destinations = DestinationPolicy(frozenset(settings.allowed_provider_hosts.split(",")))
    app.state.handlers = Handlers(runtime, repository, cipher, provider_client, destinations)
    app.state.rewrapper = Rewrapper(
        runtime.engine, runtime.store, repository, cipher, runtime.events_committed
    )
    app.state.operator_token = settings.operator_token
    app.state.introspector = Introspector(
        access_client, settings.access_url, signer, service=SERVICE
    )
    app.state.service_signer = signer
    app.state.key_readers = settings.key_readers

    install_error_handlers(app)
    install_keyvault_errors(app)
    # The proxy and catalog read keys often; reads are counted per service instead.
    app.state.telemetry = instrument(
        app,
        "keyvault",
        quiet_routes=frozenset({"/keyvault/internal/v1/connections/{connection_id}/key"}),
    )
    app.include_router(health)
    app.include_router(admin)
    app.include_router(internal)
    app.include_router(operator)
    app.include_router(install)
    return app
