"""Signing in and out, and where the console's front door leads.

Signing in takes a gateway token pasted into a password field and checks it with access.
The token then lives only in the sealed session cookie: the answer is a redirect, so the
token appears in no page and no URL, and a reload does not send it again.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from services.console.gateway import SignedOut
from services.console.session import Session
from services.console.web import BASE, ConsoleDep, FormDep
from shared.secrets import GatewayToken

router = APIRouter(prefix=BASE)

_MAX_TOKEN_LENGTH = 512


@router.get("", include_in_schema=False)
async def bare(request: Request, console: ConsoleDep) -> Response:
    return console.redirect(request, f"{BASE}/")


@router.get("/")
async def home(request: Request, console: ConsoleDep) -> Response:
    viewer = await console.viewer(request)
    return console.redirect(
        request, f"{BASE}/settings/models" if viewer.is_admin else f"{BASE}/models"
    )


@router.get("/sign-in")
async def sign_in_page(request: Request, console: ConsoleDep, ended: int = 0) -> Response:
    notice = "Your sign-in has ended. Sign in again to go on." if ended else None
    return console.render(request, "sign_in.html", notice=notice)


@router.post("/sign-in")
async def sign_in(form: FormDep, request: Request, console: ConsoleDep) -> Response:
    presented = form.get("token", "")
    if not presented or len(presented) > _MAX_TOKEN_LENGTH:
        return console.render(
            request, "sign_in.html", 400, error="Paste your gateway token to sign in."
        )

    token = GatewayToken(presented)
    try:
        await console.gateway.get(token, "access", "/access/v1/me")
    except SignedOut:
        return console.render(
            request,
            "sign_in.html",
            401,
            error="That token is not valid: it may be mistyped, revoked or expired.",
        )

    console.replace_session(request, console.session(request).signed_in_as(token))
    return console.redirect(request, f"{BASE}/")


@router.post("/sign-out")
async def sign_out(_form: FormDep, request: Request, console: ConsoleDep) -> Response:
    console.replace_session(request, Session.anonymous())
    return console.redirect(request, f"{BASE}/sign-in")
