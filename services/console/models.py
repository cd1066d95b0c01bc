"""Settings, Models: connect providers, see and manage connections, switch models on.

Reads keyvault's connections (masked key, who connected it and when), the catalog's
view of each connection (last sync and its result) and its models, and access's members
(to name who connected what). Writes go to keyvault (connect, rotate, disconnect) and to
the catalog (sync, enable, disable).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from services.console import providers
from services.console.gateway import ConsoleError, Refused, SignedOut, sentence
from services.console.providers import PROVIDERS, Provider
from services.console.web import BASE, AdminDep, Console, ConsoleDep, FormDep, Viewer

router = APIRouter(prefix=f"{BASE}/settings")

_PAGE = f"{BASE}/settings/models"


@dataclass
class ModelRow:
    id: str
    name: str
    upstream_id: str
    enabled: bool
    retired: bool
    high_cost: bool


@dataclass
class ConnectionCard:
    id: str
    kind: str
    name: str
    base_url: str
    masked_key: str
    connected_at: datetime
    connected_by: str
    key_rotated_at: datetime | None
    last_sync_at: datetime | None
    last_sync_ok: bool | None
    last_sync_reason: str | None
    models: list[ModelRow] = field(default_factory=list)

    @property
    def syncing(self) -> bool:
        return self.last_sync_at is None


@dataclass
class ConnectForm:
    """The connect form of one provider, open, with what the admin typed (never the key)."""

    kind: str
    name: str = ""
    base_url: str = ""
    region: str = ""
    error: str | None = None


@router.get("/models")
async def models_page(
    request: Request,
    console: ConsoleDep,
    admin: AdminDep,
    connect: str = "",
    connected: str = "",
) -> Response:
    opened = ConnectForm(kind=connect) if providers.provider(connect) else None
    return await _render(console, request, admin, opened=opened, connected=connected)


@router.post("/models/connect")
async def connect_provider(
    form: FormDep, request: Request, console: ConsoleDep, admin: AdminDep
) -> Response:
    chosen = providers.provider(form.get("provider", ""))
    if chosen is None:
        raise Refused("Choose one of the listed providers.", status=400)

    typed = ConnectForm(
        kind=chosen.kind,
        name=form.get("name", ""),
        base_url=form.get("base_url", ""),
        region=form.get("region", ""),
    )
    problem, body = _connect_body(chosen, typed, form.get("api_key", ""))
    if problem is not None:
        typed.error = problem
        return await _render(console, request, admin, opened=typed, status=400)

    try:
        created = await console.gateway.post(
            admin.token, "keyvault", "/keyvault/v1/connections", body
        )
    except SignedOut:
        raise
    except ConsoleError as failed:
        typed.error = _connect_failure(chosen, failed)
        return await _render(console, request, admin, opened=typed, status=400)

    target = f"{_PAGE}?connected={created['id']}#connection-{created['id']}"
    return console.redirect(request, target)


@router.post("/connections/{connection_id}/rotate")
async def rotate_key(
    connection_id: str, form: FormDep, request: Request, console: ConsoleDep, admin: AdminDep
) -> Response:
    key = form.get("api_key", "")
    if not key:
        return await _render(
            console, request, admin, status=400, card_errors={connection_id: "Paste the new key."}
        )

    try:
        rotated = await console.gateway.put(
            admin.token,
            "keyvault",
            f"/keyvault/v1/connections/{connection_id}/key",
            {"api_key": key},
        )
    except SignedOut:
        raise
    except ConsoleError as failed:
        # The card's form names its provider, so the refusal can too.
        words = _connect_failure(providers.provider(form.get("provider", "")), failed)
        return await _render(
            console, request, admin, status=400, card_errors={connection_id: words}
        )

    return await _render(
        console,
        request,
        admin,
        card_notices={connection_id: f"Key replaced. It now ends in {rotated['masked_key'][-4:]}."},
    )


@router.post("/connections/{connection_id}/sync")
async def resync(
    connection_id: str, form: FormDep, request: Request, console: ConsoleDep, admin: AdminDep
) -> Response:
    del form  # checked for its CSRF token; a resync takes no fields
    result = await console.gateway.post(
        admin.token, "catalog", f"/catalog/v1/connections/{connection_id}/sync"
    )
    if result["ok"]:
        notice = _sync_summary(result)
        return await _render(console, request, admin, card_notices={connection_id: notice})

    reason = sentence(result.get("reason") or "the provider did not list its models")
    return await _render(
        console,
        request,
        admin,
        status=502,
        card_errors={connection_id: f"Listing the models failed. {reason}"},
    )


@router.get("/connections/{connection_id}/disconnect")
async def disconnect_page(
    connection_id: str, request: Request, console: ConsoleDep, admin: AdminDep
) -> Response:
    connection = await console.gateway.get(
        admin.token, "keyvault", f"/keyvault/v1/connections/{connection_id}"
    )
    return console.render(
        request,
        "disconnect.html",
        connection=connection,
        provider_label=providers.label(connection["provider"]),
    )


@router.post("/connections/{connection_id}/disconnect")
async def disconnect(
    connection_id: str, form: FormDep, request: Request, console: ConsoleDep, admin: AdminDep
) -> Response:
    del form
    await console.gateway.delete(
        admin.token, "keyvault", f"/keyvault/v1/connections/{connection_id}"
    )
    return console.redirect(request, f"{_PAGE}?notice=disconnected")


@router.post("/models/{model_id}/switch")
async def switch_model(
    model_id: str, form: FormDep, request: Request, console: ConsoleDep, admin: AdminDep
) -> Response:
    action = "enable" if form.get("enable") == "1" else "disable"
    await console.gateway.post(admin.token, "catalog", f"/catalog/v1/models/{model_id}/{action}")
    return console.redirect(request, f"{_PAGE}#model-{model_id}")


# the page


async def _render(
    console: Console,
    request: Request,
    admin: Viewer,
    *,
    opened: ConnectForm | None = None,
    connected: str = "",
    status: int = 200,
    card_errors: dict[str, str] | None = None,
    card_notices: dict[str, str] | None = None,
) -> Response:
    cards = await _connection_cards(console, admin)
    taken = {card.name for card in cards}
    if opened is not None and not opened.name:
        opened.name = providers.free_name(opened.kind, taken)

    by_kind: dict[str, list[ConnectionCard]] = {p.kind: [] for p in PROVIDERS}
    for card in cards:
        by_kind.setdefault(card.kind, []).append(card)

    return console.render(
        request,
        "models.html",
        status,
        title="Models",
        providers=PROVIDERS,
        by_kind=by_kind,
        free_names={p.kind: providers.free_name(p.kind, taken) for p in PROVIDERS},
        opened=opened,
        connected=connected,
        notice=_NOTICES.get(request.query_params.get("notice", "")),
        card_errors=card_errors or {},
        card_notices=card_notices or {},
    )


_NOTICES = {"disconnected": "Disconnected. Its key is destroyed and its models are retired."}


async def _connection_cards(console: Console, admin: Viewer) -> list[ConnectionCard]:
    token = admin.token
    vault, catalog, models, members = await asyncio.gather(
        console.gateway.get(token, "keyvault", "/keyvault/v1/connections"),
        console.gateway.get(token, "catalog", "/catalog/v1/connections"),
        console.gateway.every_page(token, "catalog", "/catalog/v1/models", limit=100),
        console.gateway.get(token, "access", "/access/v1/members"),
    )
    synced = {c["id"]: c for c in catalog["data"]}
    names = {m["id"]: m["display_name"] for m in members["data"]}
    by_connection: dict[str, list[ModelRow]] = {}
    for model in models:
        by_connection.setdefault(model["connection_id"], []).append(_model_row(model))

    cards = [
        _card(connection, synced.get(connection["id"], {}), names, by_connection)
        for connection in vault["data"]
        if connection["status"] == "active"
    ]
    return sorted(cards, key=lambda card: card.connected_at)


def _card(
    connection: dict[str, Any],
    synced: dict[str, Any],
    names: dict[str, str],
    models: dict[str, list[ModelRow]],
) -> ConnectionCard:
    return ConnectionCard(
        id=connection["id"],
        kind=connection["provider"],
        name=connection["name"],
        base_url=connection["base_url"],
        masked_key=connection["masked_key"],
        connected_at=_when(connection["connected_at"]) or datetime.min,
        connected_by=names.get(connection["connected_by"], "a former member"),
        key_rotated_at=_when(connection.get("key_rotated_at")),
        last_sync_at=_when(synced.get("last_sync_at")),
        last_sync_ok=synced.get("last_sync_ok"),
        last_sync_reason=synced.get("last_sync_reason"),
        models=sorted(
            (m for m in models.get(connection["id"], []) if not m.retired),
            key=lambda m: m.upstream_id,
        ),
    )


def _model_row(model: dict[str, Any]) -> ModelRow:
    return ModelRow(
        id=model["id"],
        name=model["name"],
        upstream_id=model["upstream_id"],
        enabled=bool(model["enabled"]),
        retired=bool(model["retired"]),
        # Set by the catalog's price data where it has any; absent means not marked.
        high_cost=model.get("high_cost") is True,
    )


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# connecting


def _connect_body(
    chosen: Provider, typed: ConnectForm, key: str
) -> tuple[str | None, dict[str, Any]]:
    """The keyvault request for the form, or the words saying what is missing."""
    if not typed.name:
        return "Give the connection a name; its models are listed as name/model.", {}

    if not key and not chosen.needs_base_url:
        return f"Paste the {chosen.label} API key.", {}

    if chosen.needs_base_url and not typed.base_url:
        return "Give the server's base URL, such as http://localhost:11434/v1.", {}

    try:
        base_url = providers.endpoint(chosen, base_url=typed.base_url, region=typed.region)
    except ValueError as wrong:
        return str(wrong), {}

    body = {"provider": chosen.kind, "name": typed.name, "api_key": key}
    if base_url is not None:
        body["base_url"] = base_url
    return None, body


def _connect_failure(chosen: Provider | None, failed: ConsoleError) -> str:
    """A refused key check, worded for the admin, with the provider's own reason."""
    who = chosen.label if chosen else "The provider"
    said = f" {who} said: “{_providers_words(failed.reason)}”" if failed.reason else ""
    if failed.code == "key_rejected":
        return f"{who} refused this key.{said}"

    if failed.code == "provider_unavailable":
        return f"{who} could not be reached to check the key.{said}"

    if failed.code == "provider_bad_response":
        return f"{who} answered the key check in a way the gateway did not understand.{said}"

    return failed.message


# The adapters word a refusal "<kind> rejected the key (<status> <code>: <provider's words>)".
_ADAPTER_WRAPPING = re.compile(
    r"^[\w.-]+ rejected the key \((?:\d{3} )?(?:[\w.-]+: )?(?P<words>.+)\)\.?$", re.DOTALL
)


def _providers_words(reason: str) -> str:
    """The provider's own sentence out of the adapter's wrapping, when it has that shape."""
    unwrapped = _ADAPTER_WRAPPING.match(reason.strip())
    return sentence(unwrapped.group("words") if unwrapped else reason)


def _sync_summary(result: dict[str, Any]) -> str:
    counts = [
        f"{result[what]} {what}" for what in ("discovered", "updated", "retired") if result[what]
    ]
    return "Models listed again" + (f": {', '.join(counts)}." if counts else "; nothing changed.")
