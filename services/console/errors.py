"""The one place failures become pages: words for people, never a body or a traceback."""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from services.console.gateway import ConsoleError, Refused, SignedOut, Unavailable
from services.console.session import Session
from services.console.web import BASE, Console, ConsolePageError, NeedsSignIn

log = structlog.get_logger(__name__)

_HTTP_WORDS = {
    404: ("Page not found", "There is no console page at this address."),
    405: ("Not here", "This address does not take that kind of request."),
}


def install_page_errors(app: FastAPI) -> None:
    def console(request: Request) -> Console:
        found: Console = request.app.state.console
        return found

    @app.exception_handler(NeedsSignIn)
    async def _sign_in(request: Request, error: NeedsSignIn) -> Response:
        target = f"{BASE}/sign-in" + ("?ended=1" if error.ended else "")
        return console(request).redirect(request, target)

    @app.exception_handler(SignedOut)
    async def _signed_out(request: Request, _error: SignedOut) -> Response:
        # The token died between the page's first check and a later call.
        console(request).replace_session(request, Session.anonymous())
        return console(request).redirect(request, f"{BASE}/sign-in?ended=1")

    @app.exception_handler(ConsolePageError)
    async def _page_error(request: Request, error: ConsolePageError) -> Response:
        return _error_page(request, error.status, error.title, error.message)

    @app.exception_handler(ConsoleError)
    async def _console_error(request: Request, error: ConsoleError) -> Response:
        if isinstance(error, Refused):
            return _error_page(request, error.status, "That did not work", error.message)

        status = 503 if isinstance(error, Unavailable) else 502
        return _error_page(request, status, "The gateway did not answer", error.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, _error: RequestValidationError) -> Response:
        return _error_page(
            request, 400, "That did not work", "The address or form was not what this page expects."
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> Response:
        title, words = _HTTP_WORDS.get(error.status_code, ("That did not work", "Try again."))
        return _error_page(request, error.status_code, title, words)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> Response:
        log.error("console_page_failed", path=request.url.path, exc_info=error)
        return _error_page(
            request,
            500,
            "Something went wrong",
            "The console failed to show this page. Try again; if it keeps failing, "
            "the console's log has the details.",
        )

    def _error_page(request: Request, status: int, title: str, message: str) -> Response:
        return console(request).render(request, "error.html", status, title=title, message=message)
