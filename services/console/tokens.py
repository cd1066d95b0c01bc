"""Every signed-in person's own pages: their gateway tokens and the models they may use.

Tokens go through access's self-service routes (``/access/v1/tokens``), which only ever
show the caller's own. The models are the proxy's ``GET /v1/models`` with the person's
token: exactly what that token may call.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from services.console.gateway import Refused
from services.console.session import Session
from services.console.web import BASE, Console, ConsoleDep, FormDep, Viewer, ViewerDep

router = APIRouter(prefix=BASE)


@router.get("/tokens")
async def tokens_page(request: Request, console: ConsoleDep, viewer: ViewerDep) -> Response:
    return await _render(console, request, viewer)


@router.post("/tokens")
async def create_token(
    form: FormDep, request: Request, console: ConsoleDep, viewer: ViewerDep
) -> Response:
    name = form.get("name", "")
    if not name:
        return await _render(
            console,
            request,
            viewer,
            error="Name the token after where it will be used.",
            status=400,
        )

    try:
        issued = await console.gateway.post(
            viewer.token, "access", "/access/v1/tokens", {"name": name}
        )
    except Refused as refused:
        return await _render(console, request, viewer, error=refused.message, status=400)

    # The one answer that carries the new token: rendered, never redirected or stored.
    return await _render(console, request, viewer, issued=issued)


@router.post("/tokens/{token_id}/revoke")
async def revoke_token(
    token_id: str, form: FormDep, request: Request, console: ConsoleDep, viewer: ViewerDep
) -> Response:
    del form
    await console.gateway.delete(viewer.token, "access", f"/access/v1/tokens/{token_id}")
    if token_id == viewer.token_id:
        # The session's own token: nothing can be done with it any more.
        console.replace_session(request, Session.anonymous())
        return console.redirect(request, f"{BASE}/sign-in?ended=1")

    return console.redirect(request, f"{BASE}/tokens?notice=revoked")


@router.get("/models")
async def my_models(request: Request, console: ConsoleDep, viewer: ViewerDep) -> Response:
    listed = await console.gateway.get(viewer.token, "proxy", "/v1/models")
    return console.render(
        request,
        "my_models.html",
        title="My models",
        models=sorted(m["id"] for m in listed["data"]),
    )


async def _render(
    console: Console,
    request: Request,
    viewer: Viewer,
    *,
    issued: dict[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    listed = await console.gateway.get(viewer.token, "access", "/access/v1/tokens")
    live = [t for t in listed["data"] if t["revoked_at"] is None]
    notice = "Token revoked." if request.query_params.get("notice") == "revoked" else None
    return console.render(
        request,
        "tokens.html",
        status,
        title="My tokens",
        tokens=sorted(live, key=lambda t: str(t["created_at"]), reverse=True),
        issued=issued,
        error=error,
        notice=notice,
    )
