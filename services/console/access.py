"""A model's access setting: who may use it, and finding people and groups to add.

Rules come from access (``/access/v1/models/{id}/rules``); the search box asks access's
directory as the admin types. "Can View" grants, "Remove" revokes one rule, taking away
only what that rule gave.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from services.console.gateway import Refused
from services.console.web import BASE, AdminDep, Console, ConsoleDep, FormDep, Viewer

router = APIRouter(prefix=f"{BASE}/settings/models")

_EVERYONE = "All workspace members"
_MAX_QUERY = 100


@dataclass(frozen=True, slots=True)
class RuleRow:
    id: str
    kind: str
    principal_id: str
    label: str
    detail: str


@dataclass(frozen=True, slots=True)
class Candidate:
    kind: str
    id: str
    label: str
    detail: str
    granted: bool


@router.get("/{model_id}/access")
async def access_page(
    model_id: str, request: Request, console: ConsoleDep, admin: AdminDep, q: str = ""
) -> Response:
    return await _render(console, request, admin, model_id, query=q[:_MAX_QUERY].strip())


@router.post("/{model_id}/access/grant")
async def grant(
    model_id: str, form: FormDep, request: Request, console: ConsoleDep, admin: AdminDep
) -> Response:
    kind = form.get("principal_kind", "")
    body: dict[str, Any] = {"principal_kind": kind}
    if kind != "workspace":
        body["principal_id"] = form.get("principal_id", "")
    try:
        await console.gateway.post(
            admin.token, "access", f"/access/v1/models/{model_id}/rules", body
        )
    except Refused as refused:
        words = "That already has access." if refused.status == 409 else refused.message
        return await _render(
            console, request, admin, model_id, query=form.get("q", ""), error=words, status=400
        )

    # The search stays, so the admin can add the next person from the same results.
    query = urlencode({"notice": "granted", "q": form.get("q", "")})
    return console.redirect(request, f"{BASE}/settings/models/{model_id}/access?{query}")


@router.post("/{model_id}/access/rules/{rule_id}/remove")
async def remove(
    model_id: str,
    rule_id: str,
    form: FormDep,
    request: Request,
    console: ConsoleDep,
    admin: AdminDep,
) -> Response:
    del form
    await console.gateway.delete(
        admin.token, "access", f"/access/v1/models/{model_id}/rules/{rule_id}"
    )
    return console.redirect(request, f"{BASE}/settings/models/{model_id}/access?notice=removed")


_NOTICES = {"granted": "Access added.", "removed": "Access removed."}


async def _render(
    console: Console,
    request: Request,
    admin: Viewer,
    model_id: str,
    *,
    query: str,
    error: str | None = None,
    status: int = 200,
) -> Response:
    token = admin.token
    model, members, groups = await asyncio.gather(
        console.gateway.get(token, "catalog", f"/catalog/v1/models/{model_id}"),
        console.gateway.get(token, "access", "/access/v1/members"),
        console.gateway.get(token, "access", "/access/v1/groups"),
    )
    try:
        rules = (await console.gateway.get(token, "access", f"/access/v1/models/{model_id}/rules"))[
            "data"
        ]
    except Refused as refused:
        if refused.status != 404:
            raise
        # access learns of models from the catalog's events, a moment after the catalog.
        rules, error = [], error or "Access is still learning of this model; reload in a moment."

    people = {m["id"]: m for m in members["data"]}
    teams = {g["id"]: g for g in groups["data"]}
    rows = [_rule_row(rule, people, teams) for rule in rules]
    granted = {(row.kind, row.principal_id) for row in rows}
    candidates = await _candidates(console, admin, query, granted, teams)
    return console.render(
        request,
        "access.html",
        status,
        title=f"Access to {model['name']}",
        model=model,
        high_cost=model.get("high_cost") is True,
        rules=rows,
        query=query,
        candidates=candidates,
        error=error,
        notice=_NOTICES.get(request.query_params.get("notice", "")),
    )


def _rule_row(
    rule: dict[str, Any], people: dict[str, dict[str, Any]], teams: dict[str, dict[str, Any]]
) -> RuleRow:
    kind, principal = rule["principal_kind"], rule["principal_id"]
    if kind == "workspace":
        return RuleRow(rule["id"], kind, principal, _EVERYONE, "everyone, now and later")

    if kind == "group":
        name = teams.get(principal, {}).get("name", "a deleted group")
        return RuleRow(rule["id"], kind, principal, f"{name}", "group")

    person = people.get(principal)
    if person is None:
        return RuleRow(rule["id"], kind, principal, "a former member", "person")

    return RuleRow(rule["id"], kind, principal, person["display_name"], person["email"])


async def _candidates(
    console: Console,
    admin: Viewer,
    query: str,
    granted: set[tuple[str, str]],
    teams: dict[str, dict[str, Any]],
) -> list[Candidate]:
    """Who the search box offers: the directory's matches, and everyone when it fits."""
    found: list[Candidate] = []
    everyone_granted = any(kind == "workspace" for kind, _ in granted)
    if not query or query.lower() in _EVERYONE.lower() or query.lower() in "everyone":
        found.append(Candidate("workspace", "", _EVERYONE, "everyone", everyone_granted))

    if not query:
        found += [
            Candidate("group", g["id"], g["name"], "group", ("group", g["id"]) in granted)
            for g in sorted(teams.values(), key=lambda g: str(g["name"]).lower())[:10]
        ]
        return found

    entries = await console.gateway.get(
        admin.token, "access", "/access/v1/directory", q=query, limit=20
    )
    for entry in entries["data"]:
        if entry["kind"] == "user" and not entry["active"]:
            continue
        detail = entry["email"] if entry["kind"] == "user" else "group"
        granted_now = (entry["kind"], entry["id"]) in granted
        found.append(Candidate(entry["kind"], entry["id"], entry["name"], detail, granted_now))
    return found
