"""What every console page shares: the session, the signed-in viewer, forms and rendering.

Pages are server-rendered. A POST checks the session's CSRF token before anything else,
acts through the gateway's public APIs, then redirects (303) to the page that shows the
outcome, or renders that page again with the refusal in words. The console's small
script only makes the same requests in place; every page works without it.

    ConsolePageError          rendered as a page of its own, in words
    ├── NeedsSignIn            no session, or its token is no longer valid: go sign in
    ├── AdminsOnly             a member opened an admin page
    └── FormExpired            a POST without the session's CSRF token
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import parse_qsl, urlsplit

import structlog
from fastapi import Depends, Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response

from services.console.gateway import Gateway, SignedOut
from services.console.session import (
    COOKIE_PATH,
    CSRF_FIELD,
    CSRF_HEADER,
    Session,
    SessionSeal,
)
from shared.principal import ADMIN_ROLES
from shared.secrets import GatewayToken

log = structlog.get_logger(__name__)

BASE: Final = "/console"
_TEMPLATES = Path(__file__).parent / "templates"
_MAX_FORM_BYTES: Final = 64 * 1024


class ConsolePageError(Exception):
    status = 400
    title = "Something went wrong"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NeedsSignIn(ConsolePageError):
    status = 401
    title = "Sign in"

    def __init__(self, message: str, *, ended: bool = False) -> None:
        super().__init__(message)
        # True when a signed-in session's token stopped working, rather than none was given.
        self.ended = ended


class AdminsOnly(ConsolePageError):
    status = 403
    title = "For workspace admins"


class FormExpired(ConsolePageError):
    status = 403
    title = "This form has expired"


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is signed in, as access describes the session's token."""

    token: GatewayToken
    user_id: str
    token_id: str
    workspace_id: str
    role: str
    email: str
    display_name: str

    @property
    def is_admin(self) -> bool:
        return self.role in ADMIN_ROLES


class Console:
    """The parts every page uses, built once at start-up."""

    def __init__(self, gateway: Gateway, seal: SessionSeal) -> None:
        self.gateway = gateway
        self.seal = seal
        self.templates = Environment(
            loader=FileSystemLoader(_TEMPLATES),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def session(self, request: Request) -> Session:
        """The request's session; a visitor without one gets a new, anonymous one."""
        existing = getattr(request.state, "session", None)
        if isinstance(existing, Session):
            return existing

        opened = self.seal.open(request)
        session = opened or Session.anonymous()
        request.state.session = session
        request.state.session_changed = opened is None
        return session

    def replace_session(self, request: Request, session: Session) -> None:
        request.state.session = session
        request.state.session_changed = True

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> Response:
        session = self.session(request)
        html = self.templates.get_template(template).render(
            base=BASE,
            csrf_token=session.csrf,
            path=request.url.path,
            viewer=getattr(request.state, "viewer", None),
            **context,
        )
        return self.finish(request, HTMLResponse(html, status))

    def redirect(self, request: Request, to: str) -> Response:
        return self.finish(request, RedirectResponse(to, status_code=303))

    def finish(self, request: Request, response: Response) -> Response:
        # An answer outside the cookie's path (a browser's /favicon.ico) would replace the
        # session it cannot see with a new one.
        inside = request.url.path.startswith(COOKIE_PATH)
        if inside and getattr(request.state, "session_changed", False):
            self.seal.store(response, request, self.session(request))
        return response

    async def viewer(self, request: Request) -> Viewer:
        """The signed-in person; their token is checked with access on every page."""
        session = self.session(request)
        if session.token is None:
            raise NeedsSignIn("Sign in to open the console.")

        try:
            me = await self.gateway.get(session.token, "access", "/access/v1/me")
        except SignedOut as ended:
            self.replace_session(request, Session.anonymous())
            raise NeedsSignIn(ended.message, ended=True) from None

        viewer = Viewer(
            token=session.token,
            user_id=me["user_id"],
            token_id=me["token_id"],
            workspace_id=me["workspace_id"],
            role=me["role"],
            email=me["email"],
            display_name=me["display_name"],
        )
        request.state.viewer = viewer
        return viewer

    async def form(self, request: Request) -> dict[str, str]:
        """A POST's form fields, once its CSRF token matches the session's."""
        body = await request.body()
        if len(body) > _MAX_FORM_BYTES:
            raise ConsolePageError("That form is too large to send.")

        fields = dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
        presented = request.headers.get(CSRF_HEADER) or fields.pop(CSRF_FIELD, None)
        fields.pop(CSRF_FIELD, None)
        # The browser says where a form came from; another site's is refused even before
        # the token is looked at (older browsers that say nothing rely on the token).
        if _cross_site(request) or not self.session(request).accepts(presented):
            log.warning("console_csrf_refused", path=request.url.path)
            raise FormExpired(
                "The page you sent this from is out of date, or came from another site. "
                "Reload the page and try again."
            )

        return {name: value.strip() for name, value in fields.items()}


def _cross_site(request: Request) -> bool:
    if request.headers.get("sec-fetch-site") == "cross-site":
        return True

    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin == "null"

    # Behind a router the browser's host is the forwarded one; a form cannot set that header.
    ours = {request.headers.get("host"), request.headers.get("x-forwarded-host")}
    return urlsplit(origin).netloc not in ours


def _console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


async def _viewer(request: Request, console: Annotated[Console, Depends(_console)]) -> Viewer:
    return await console.viewer(request)


async def _admin(request: Request, console: Annotated[Console, Depends(_console)]) -> Viewer:
    viewer = await console.viewer(request)
    if not viewer.is_admin:
        raise AdminsOnly("This page is for workspace admins. Your own tokens are under My tokens.")

    return viewer


async def _form(request: Request, console: Annotated[Console, Depends(_console)]) -> dict[str, str]:
    return await console.form(request)


ConsoleDep = Annotated[Console, Depends(_console)]
ViewerDep = Annotated[Viewer, Depends(_viewer)]
AdminDep = Annotated[Viewer, Depends(_admin)]
FormDep = Annotated[dict[str, str], Depends(_form)]
