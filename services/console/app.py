"""Wiring of the console: settings, the gateway client, the session seal, pages."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from fastapi import APIRouter, FastAPI
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.console import access, auth, models, people, tokens
from services.console.errors import install_page_errors
from services.console.gateway import Gateway
from services.console.session import SessionSeal
from services.console.settings import Settings
from services.console.web import BASE, Console
from shared.logging import configure_logging
from shared.telemetry import instrument

# Pages load nothing from elsewhere and run no inline script; no other site may frame them.
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]

health = APIRouter(prefix=BASE)


@health.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health.get("/readyz", include_in_schema=False)
async def readyz() -> dict[str, str]:
    # Nothing of its own to be ready: a service it calls being down shows on the page.
    return {"status": "ok"}


class SecurityHeaders:
    """Every answer gets the headers above; pages are never cached, they may show a token."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        static = scope["path"].startswith(f"{BASE}/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                headers.extend(_SECURITY_HEADERS)
                if not static:
                    headers.append((b"cache-control", b"no-store"))
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app() -> FastAPI:
    settings = Settings()
    configure_logging("console", settings.log_level, settings.log_json)
    # The other services are ours; their calls never go through an outbound proxy.
    client = httpx.AsyncClient(timeout=settings.request_timeout_seconds, trust_env=False)
    gateway = Gateway(
        client,
        {
            "access": settings.access_url,
            "keyvault": settings.keyvault_url,
            "catalog": settings.catalog_url,
            "proxy": settings.proxy_url,
        },
    )
    secret = settings.console_secret.get_secret_value() or secrets.token_urlsafe(48)
    seal = SessionSeal(
        secret.encode(),
        max_age_seconds=settings.session_max_age_seconds,
        secure=settings.cookie_secure,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await client.aclose()

    app = FastAPI(
        title="BYOM console",
        summary="The admin and member web pages.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.console = Console(gateway, seal)
    install_page_errors(app)
    app.state.telemetry = instrument(app, "console")
    app.add_middleware(SecurityHeaders)
    app.mount(
        f"{BASE}/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static"
    )
    app.include_router(health)
    for pages in (auth, models, access, people, tokens):
        app.include_router(pages.router)
    return app
