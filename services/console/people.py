"""The People and Groups pages: who is in the workspace, and the groups they form.

Everything here is access's admin API: members (add, suspend, lift a suspension) and
groups (create, add and remove members).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from services.console.gateway import Refused
from services.console.web import BASE, AdminDep, Console, ConsoleDep, FormDep, Viewer

router = APIRouter(prefix=BASE)

_ROLES = ("member", "admin", "owner")
_NOTICES = {
    "added": "Member added. They sign in with a token you create for them, or one they make.",
    "created": "Group created.",
    "joined": "Added to the group.",
    "left": "Removed from the group.",
    "deactivated": "Member suspended: their tokens and access open nothing until lifted.",
    "reactivated": "Suspension lifted.",
}


# people


@router.get("/people")
async def people_page(request: Request, console: ConsoleDep, admin: AdminDep) -> Response:
    return await _people(console, request, admin)


@router.post("/people")
async def add_member(
    form: FormDep, request: Request, console: ConsoleDep, admin: AdminDep
) -> Response:
    typed = {
        "email": form.get("email", ""),
        "display_name": form.get("display_name", ""),
        "role": form.get("role", "member") if form.get("role") in _ROLES else "member",
    }
    try:
        await console.gateway.post(admin.token, "access", "/access/v1/members", typed)
    except Refused as refused:
        return await _people(
            console, request, admin, error=refused.message, typed=typed, status=400
        )

    return console.redirect(request, f"{BASE}/people?notice=added")


@router.post("/people/{user_id}/{action}")
async def suspend_or_lift(
    user_id: str,
    action: str,
    form: FormDep,
    request: Request,
    console: ConsoleDep,
    admin: AdminDep,
) -> Response:
    del form
    if action not in ("deactivate", "reactivate"):
        raise Refused("There is no such action on a member.", status=404)

    try:
        await console.gateway.post(admin.token, "access", f"/access/v1/members/{user_id}/{action}")
    except Refused as refused:
        return await _people(console, request, admin, error=refused.message, status=400)

    return console.redirect(request, f"{BASE}/people?notice={action}d")


async def _people(
    console: Console,
    request: Request,
    admin: Viewer,
    *,
    error: str | None = None,
    typed: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    members = await console.gateway.get(admin.token, "access", "/access/v1/members")
    return console.render(
        request,
        "people.html",
        status,
        title="People",
        members=sorted(members["data"], key=lambda m: str(m["display_name"]).lower()),
        roles=_ROLES,
        typed=typed or {},
        error=error,
        notice=_NOTICES.get(request.query_params.get("notice", "")),
    )


# groups


@router.get("/groups")
async def groups_page(request: Request, console: ConsoleDep, admin: AdminDep) -> Response:
    return await _groups(console, request, admin)


@router.post("/groups")
async def create_group(
    form: FormDep, request: Request, console: ConsoleDep, admin: AdminDep
) -> Response:
    name = form.get("name", "")
    try:
        created = await console.gateway.post(
            admin.token, "access", "/access/v1/groups", {"name": name}
        )
    except Refused as refused:
        return await _groups(console, request, admin, error=refused.message, typed=name, status=400)

    return console.redirect(request, f"{BASE}/groups/{created['id']}?notice=created")


@router.get("/groups/{group_id}")
async def group_page(
    group_id: str, request: Request, console: ConsoleDep, admin: AdminDep
) -> Response:
    return await _group(console, request, admin, group_id)


@router.post("/groups/{group_id}/members")
async def add_to_group(
    group_id: str, form: FormDep, request: Request, console: ConsoleDep, admin: AdminDep
) -> Response:
    user_id = form.get("user_id", "")
    try:
        await console.gateway.put(
            admin.token, "access", f"/access/v1/groups/{group_id}/members/{user_id}"
        )
    except Refused as refused:
        return await _group(console, request, admin, group_id, error=refused.message, status=400)

    return console.redirect(request, f"{BASE}/groups/{group_id}?notice=joined")


@router.post("/groups/{group_id}/members/{user_id}/remove")
async def remove_from_group(
    group_id: str,
    user_id: str,
    form: FormDep,
    request: Request,
    console: ConsoleDep,
    admin: AdminDep,
) -> Response:
    del form
    await console.gateway.delete(
        admin.token, "access", f"/access/v1/groups/{group_id}/members/{user_id}"
    )
    return console.redirect(request, f"{BASE}/groups/{group_id}?notice=left")


async def _groups(
    console: Console,
    request: Request,
    admin: Viewer,
    *,
    error: str | None = None,
    typed: str = "",
    status: int = 200,
) -> Response:
    groups = await console.gateway.get(admin.token, "access", "/access/v1/groups")
    listed = sorted(groups["data"], key=lambda g: str(g["name"]).lower())
    sizes = await asyncio.gather(
        *(
            console.gateway.get(admin.token, "access", f"/access/v1/groups/{g['id']}/members")
            for g in listed
        )
    )
    return console.render(
        request,
        "groups.html",
        status,
        title="Groups",
        groups=[(g, len(members["data"])) for g, members in zip(listed, sizes, strict=True)],
        typed=typed,
        error=error,
        notice=_NOTICES.get(request.query_params.get("notice", "")),
    )


async def _group(
    console: Console,
    request: Request,
    admin: Viewer,
    group_id: str,
    *,
    error: str | None = None,
    status: int = 200,
) -> Response:
    groups, inside, everyone = await asyncio.gather(
        console.gateway.get(admin.token, "access", "/access/v1/groups"),
        console.gateway.get(admin.token, "access", f"/access/v1/groups/{group_id}/members"),
        console.gateway.get(admin.token, "access", "/access/v1/members"),
    )
    group: dict[str, Any] | None = next((g for g in groups["data"] if g["id"] == group_id), None)
    if group is None:
        raise Refused("There is no such group in this workspace.", status=404)

    in_ids = {m["id"] for m in inside["data"]}
    return console.render(
        request,
        "group.html",
        status,
        title=group["name"],
        group=group,
        members=sorted(inside["data"], key=lambda m: str(m["display_name"]).lower()),
        others=sorted(
            (m for m in everyone["data"] if m["id"] not in in_ids and m["active"]),
            key=lambda m: str(m["display_name"]).lower(),
        ),
        error=error,
        notice=_NOTICES.get(request.query_params.get("notice", "")),
    )
