"""The console's parts that need no browser: the session seal, error wording, providers, marks."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from services.console import providers, web
from services.console.gateway import Gateway, Refused, SignedOut, Unavailable
from services.console.models import (
    ConnectionCard,
    _connect_failure,
    _model_row,
)
from services.console.session import COOKIE_NAME, Session, SessionSeal
from services.console.web import Console
from shared.secrets import GatewayToken

TOKEN = GatewayToken("byom_" + "t" * 40)


def request_with(cookie: str | None, *, scheme: str = "http") -> Request:
    headers = [(b"cookie", f"{COOKIE_NAME}={cookie}".encode())] if cookie else []
    scope = {"type": "http", "method": "GET", "path": "/console/", "headers": headers}
    return Request({**scope, "scheme": scheme, "query_string": b"", "server": ("t", 80)})


def sealed(seal: SessionSeal, session: Session, *, scheme: str = "http") -> tuple[str, str]:
    response = Response()
    seal.store(response, request_with(None, scheme=scheme), session)
    header = response.headers["set-cookie"]
    value = header.split(";", 1)[0].split("=", 1)[1].strip('"')
    return value, header


def test_a_sealed_session_opens_again_with_its_token_and_csrf() -> None:
    """A session sealed into the cookie comes back whole, and the cookie does not show the token."""
    seal = SessionSeal(b"s" * 48, max_age_seconds=3600, secure=None)
    session = Session.anonymous().signed_in_as(TOKEN)

    value, header = sealed(seal, session)
    opened = seal.open(request_with(value))

    assert opened == session
    assert TOKEN.reveal() not in header
    assert "HttpOnly" in header
    assert "SameSite=strict" in header
    assert "Secure" not in header


def test_a_forged_or_foreign_or_stale_cookie_opens_no_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A changed byte, another install's secret, or an age past the limit all leave the visitor signed out."""
    seal = SessionSeal(b"s" * 48, max_age_seconds=120, secure=None)
    other = SessionSeal(b"o" * 48, max_age_seconds=120, secure=None)
    value, _ = sealed(seal, Session.anonymous().signed_in_as(TOKEN))
    forged = value[:-6] + ("A" if value[-6] != "A" else "B") + value[-5:]

    assert seal.open(request_with(forged)) is None
    assert other.open(request_with(value)) is None

    later = time.time() + 121
    monkeypatch.setattr("cryptography.fernet.time.time", lambda: later)
    assert seal.open(request_with(value)) is None


def test_the_cookie_is_secure_over_https_and_behind_a_tls_proxy() -> None:
    """Secure is set when the request came over https, and can be forced by the setting."""
    automatic = SessionSeal(b"s" * 48, max_age_seconds=3600, secure=None)
    forced = SessionSeal(b"s" * 48, max_age_seconds=3600, secure=True)

    _, over_tls = sealed(automatic, Session.anonymous(), scheme="https")
    _, always = sealed(forced, Session.anonymous())

    assert "Secure" in over_tls
    assert "Secure" in always


def test_only_the_sessions_own_csrf_token_is_accepted() -> None:
    """The CSRF check takes the session's token and refuses none, another session's, and a prefix."""
    session = Session.anonymous()

    assert session.accepts(session.csrf)
    assert not session.accepts(None)
    assert not session.accepts(Session.anonymous().csrf)
    assert not session.accepts(session.csrf[:-1])
    assert session.signed_in_as(TOKEN).csrf != session.csrf


async def answer_with(status: int, body: Any) -> Exception:
    def reply(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {TOKEN.reveal()}"
        return httpx.Response(status, json=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(reply)) as client:
        gateway = Gateway(client, {"catalog": "http://catalog.test"})
        with pytest.raises((Refused, SignedOut, Unavailable)) as raised:
            await gateway.get(TOKEN, "catalog", "/catalog/v1/models")
    return raised.value


async def test_service_errors_become_sentences_never_bodies() -> None:
    """A 5xx names the service in words, a 401 signs out, a 403 says admins only, a 4xx keeps the service's reason."""
    failed = await answer_with(500, {"error": {"code": "internal", "message": "boom"}})
    signed_out = await answer_with(401, {"error": {"code": "unauthenticated", "message": "x"}})
    forbidden = await answer_with(403, {"error": {"code": "forbidden", "message": "x"}})
    refused = await answer_with(409, {"error": {"code": "taken", "message": "name is taken"}})
    garbage = await answer_with(502, ["not", "an", "error"])

    assert isinstance(failed, Unavailable)
    assert str(failed) == "The model catalog could not do that. Boom."
    assert isinstance(signed_out, SignedOut)
    assert str(forbidden) == "Only workspace admins can do this."
    assert isinstance(refused, Refused) and str(refused) == "Name is taken."
    assert str(garbage) == "The model catalog could not do that. It failed."
    for error in (failed, signed_out, forbidden, refused, garbage):
        assert "{" not in str(error)


def test_a_refused_key_is_told_in_the_providers_own_words() -> None:
    """The adapter's wrapping is taken off a refusal, leaving the provider's sentence after the console's."""
    refusal = Refused(
        "x",
        status=400,
        code="key_rejected",
        reason="openai rejected the key (401 invalid_api_key: Incorrect API key provided: [redacted].)",
    )

    words = _connect_failure(providers.provider("openai"), refusal)

    assert (
        words == "OpenAI refused this key. OpenAI said: “Incorrect API key provided: [redacted].”"
    )


def test_bedrock_takes_a_region_and_refuses_a_malformed_one() -> None:
    """A Bedrock region becomes its runtime URL; a given endpoint wins; a region with odd characters is refused."""
    bedrock = providers.provider("bedrock")
    openai = providers.provider("openai")
    assert bedrock is not None and openai is not None

    assert providers.endpoint(bedrock, base_url="", region="eu-west-3") == (
        "https://bedrock-runtime.eu-west-3.amazonaws.com"
    )
    assert providers.endpoint(bedrock, base_url="http://127.0.0.1:9/x", region="") == (
        "http://127.0.0.1:9/x"
    )
    assert providers.endpoint(openai, base_url="", region="") is None
    with pytest.raises(ValueError, match="not an AWS region"):
        providers.endpoint(bedrock, base_url="", region="eu-west-3.evil.example/")


def test_a_new_connection_is_offered_a_name_nobody_uses() -> None:
    """The connect form suggests the provider's name, numbered when it is taken."""
    assert providers.free_name("openai", set()) == "openai"
    assert providers.free_name("openai", {"openai", "openai-2"}) == "openai-3"


def test_a_high_cost_model_is_marked_on_the_models_page() -> None:
    """A catalog model carrying high_cost true shows the High cost mark; one without the field shows none."""
    costly = _model_row(catalog_model("gpt-big", high_cost=True))
    plain = _model_row(catalog_model("gpt-small"))
    card = ConnectionCard(
        id="c1",
        kind="openai",
        name="openai",
        base_url="https://api.openai.com/v1",
        masked_key="sk-…abcd",
        connected_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
        connected_by="Owner",
        key_rotated_at=None,
        last_sync_at=datetime(2026, 1, 2, 3, 5, tzinfo=UTC),
        last_sync_ok=True,
        last_sync_reason=None,
        models=[costly, plain],
    )
    # Rendering needs only the templates; no gateway or seal is called.
    console = Console(gateway=None, seal=None)  # type: ignore[arg-type]

    html = console.templates.get_template("models.html").render(
        base="/console",
        csrf_token="c",
        path="/console/settings/models",
        viewer=None,
        providers=providers.PROVIDERS,
        by_kind={p.kind: ([card] if p.kind == "openai" else []) for p in providers.PROVIDERS},
        free_names={p.kind: p.kind for p in providers.PROVIDERS},
        opened=None,
        connected="",
        notice=None,
        card_errors={},
        card_notices={},
    )

    costly_row = html.split('id="model-gpt-big"')[1].split("</li>")[0]
    plain_row = html.split('id="model-gpt-small"')[1].split("</li>")[0]
    assert "High cost" in costly_row
    assert "High cost" not in plain_row


def catalog_model(upstream_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": upstream_id,
        "name": f"openai/{upstream_id}",
        "upstream_id": upstream_id,
        "enabled": False,
        "retired": False,
        **extra,
    }


def test_model_rows_carry_no_mark_without_the_field() -> None:
    """A model row is marked only by a literal true, not by a missing or truthy-looking value."""
    assert _model_row(catalog_model("a", high_cost="yes")).high_cost is False
    assert _model_row(catalog_model("b")).high_cost is False
    assert _model_row(catalog_model("c", high_cost=True)).high_cost is True


async def test_a_paged_list_is_read_to_its_last_page() -> None:
    """The console follows next_cursor until the service says there is no more."""
    pages = {
        None: {"data": [1, 2], "next_cursor": "c2"},
        "c2": {"data": [3], "next_cursor": "c3"},
        "c3": {"data": [4], "next_cursor": None},
    }

    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages[request.url.params.get("cursor")])

    async with httpx.AsyncClient(transport=httpx.MockTransport(reply)) as client:
        gateway = Gateway(client, {"catalog": "http://catalog.test"})
        items = await gateway.every_page(TOKEN, "catalog", "/catalog/v1/models", limit=2)

    assert items == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("headers", "cross"),
    [
        ({"host": "gw.example", "sec-fetch-site": "cross-site"}, True),
        ({"host": "gw.example", "origin": "https://evil.example"}, True),
        ({"host": "gw.example", "origin": "null"}, True),
        ({"host": "gw.example", "origin": "https://gw.example"}, False),
        (
            {
                "host": "127.0.0.1:8004",
                "x-forwarded-host": "gw.example",
                "origin": "https://gw.example",
            },
            False,
        ),
        ({"host": "gw.example", "sec-fetch-site": "same-origin"}, False),
        ({"host": "gw.example"}, False),
    ],
)
def test_a_form_from_another_site_is_told_apart(headers: dict[str, str], cross: bool) -> None:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/console/sign-in",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    assert web._cross_site(Request(scope)) is cross
