"""The console, driven as an admin and a member drive it: in a real headless Chromium.

The browser is Debian's Chromium under Playwright; the console and every service behind
it run as processes on real PostgreSQL and NATS, with the provider emulator as the
provider. Each test checks what the page says and, through the public APIs, that the
gateway did what the page claims. Screenshots land in ``.tmp/artifacts/console/``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.conftest import Infra
from tests.console.browser import LAPTOP, PHONE, chromium_executable, screenshot_path
from tests.e2e.flows import discovered_models, listed, provider_key
from tests.emulator import EmulatorState, running_emulator
from tests.stack import ALL_SERVICES, Stack
from tests.support import Workspace, eventually, unique

pytestmark = pytest.mark.e2e

MODELS = ["gpt-alpha", "gpt-beta", "gpt-gamma"]
# Model discovery follows events through two services; a page waits this long for it.
SLOW_MS = 20_000
# Each page answer passes through several services: on a busy machine, five seconds (the
# assertions' default) can run out while nothing is wrong.
expect.set_options(timeout=10_000)


@pytest.fixture(scope="module")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with infra.stack(
        log_dir=Path(tmp_path_factory.mktemp("console-logs")),
        services=(*ALL_SERVICES, "console"),
    ) as running:
        yield running


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[tuple[EmulatorState, str]]:
    state = EmulatorState(models=list(MODELS))
    async with running_emulator(state) as base_url:
        yield state, base_url


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_executable()
    async with async_playwright() as playwright:
        # Root cannot use Chromium's sandbox; the pages are our own, on loopback.
        launched = await playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox"]
        )
        yield launched
        await launched.close()


async def new_page(browser: Browser, stack: Stack, viewport: dict[str, int]) -> Page:
    context = await browser.new_context(viewport=viewport, base_url=stack.url("console"))  # type: ignore[arg-type]
    await context.grant_permissions(["clipboard-read", "clipboard-write"])
    context.set_default_timeout(10_000)
    return await context.new_page()


@pytest.fixture
async def laptop(browser: Browser, stack: Stack) -> AsyncIterator[Page]:
    page = await new_page(browser, stack, LAPTOP)
    yield page
    await page.context.close()


@pytest.fixture
async def phone(browser: Browser, stack: Stack) -> AsyncIterator[Page]:
    page = await new_page(browser, stack, PHONE)
    yield page
    await page.context.close()


# steps


async def sign_in(page: Page, token: str) -> None:
    await page.goto("/console/")
    await expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    await page.get_by_label("Gateway token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()


async def shot(page: Page, name: str) -> None:
    await page.screenshot(path=screenshot_path(name), full_page=True)


async def connected(
    ws: Workspace, provider: tuple[EmulatorState, str], name: str
) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """A connection made over the API, once the catalog has listed its models."""
    state, base_url = provider
    key = provider_key()
    state.keys.add(key)
    connection = await ws.ok(
        "POST",
        "/keyvault/v1/connections",
        json={"provider": "openai-compatible", "name": name, "base_url": base_url, "api_key": key},
    )
    models = await discovered_models(ws, connection["id"], count=len(MODELS))
    return connection, models, key


async def known_to_access(ws: Workspace, model_id: str) -> None:
    async def known() -> bool:
        response = await ws.call("GET", f"/access/v1/models/{model_id}/rules")
        return response.status_code == 200

    await eventually(known, within=10)


async def fits_the_width(page: Page) -> bool:
    return bool(
        await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    )


# the admin


async def test_an_admin_connects_a_provider_and_enables_a_model_with_the_keyboard(
    stack: Stack, workspace: Workspace, provider: tuple[EmulatorState, str], laptop: Page
) -> None:
    """Connect opens with Enter, shows progress while the key is checked, and each listed model gets a switch that Enter turns on."""
    state, base_url = provider
    key = provider_key()
    state.keys.add(key)
    page = laptop
    await sign_in(page, workspace.admin_token)
    await expect(page.get_by_role("heading", name="Connect AI Provider")).to_be_visible()
    for label in (
        "OpenAI",
        "Anthropic",
        "Google",
        "xAI",
        "Amazon Bedrock",
        "OpenRouter",
        "Groq",
        "DeepSeek",
        "OpenAI-compatible",
    ):
        await expect(
            page.get_by_role("button", name=f"Connect {label}", exact=True)
        ).to_be_visible()
    await shot(page, "models-empty-laptop")

    await page.get_by_role("button", name="Connect OpenAI-compatible", exact=True).focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_label("OpenAI-compatible API key")).to_be_focused()
    await page.keyboard.type(key)
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Base URL", exact=True)).to_be_focused()
    await page.keyboard.type(base_url)
    state.delay = 1.5
    try:
        await page.keyboard.press("Enter")
        await expect(page.get_by_text("Checking the key with OpenAI-compatible…")).to_be_visible()
        await shot(page, "models-connect-progress-laptop")
    finally:
        state.delay = 0.0

    switch = page.get_by_role("switch", name="openai-compatible/gpt-beta")
    await expect(switch).to_be_visible(timeout=SLOW_MS)
    await expect(switch).to_have_attribute("aria-checked", "false")
    await switch.focus()
    await page.keyboard.press("Enter")
    switched = page.get_by_role("switch", name="openai-compatible/gpt-beta")
    await expect(switched).to_have_attribute("aria-checked", "true")
    await expect(switched).to_be_focused()
    await shot(page, "models-connected-laptop")

    models = (await workspace.ok("GET", "/catalog/v1/models"))["data"]
    enabled = {m["name"] for m in models if m["enabled"]}
    assert enabled == {"openai-compatible/gpt-beta"}
    assert workspace.admin_token not in page.url
    assert workspace.admin_token not in await page.content()
    assert key not in await page.content()


async def test_a_wrong_key_shows_the_providers_reason_in_words(
    stack: Stack, workspace: Workspace, provider: tuple[EmulatorState, str], laptop: Page
) -> None:
    """OpenAI refusing a key is said in a sentence with the provider's own reason, never as JSON, and the key is not repeated."""
    _, base_url = provider
    wrong = provider_key()
    page = laptop
    await sign_in(page, workspace.admin_token)

    await page.get_by_role("button", name="Connect OpenAI", exact=True).click()
    panel = page.locator("#connect-openai")
    await panel.get_by_label("OpenAI API key").fill(wrong)
    await panel.get_by_text("Use another endpoint").click()
    await panel.get_by_label("Endpoint base URL (optional)").fill(base_url)
    await panel.get_by_role("button", name="Check key and connect").click()

    alert = page.locator("#connect-openai").get_by_role("alert")
    await expect(alert).to_contain_text("OpenAI refused this key.")
    await expect(alert).to_contain_text("Incorrect API key provided")
    await expect(alert).to_be_focused()
    await shot(page, "models-wrong-key-laptop")
    html = await page.content()
    assert wrong not in html
    assert '{"' not in await alert.inner_text()
    assert (await workspace.ok("GET", "/keyvault/v1/connections"))["data"] == []


async def test_a_connected_provider_shows_its_facts_and_rotates_resyncs_and_disconnects(
    stack: Stack, workspace: Workspace, provider: tuple[EmulatorState, str], laptop: Page
) -> None:
    """The card shows the masked key, who connected it, the last sync's result; rotate and resync answer in place; disconnect asks first."""
    state, _ = provider
    connection, _, _ = await connected(workspace, provider, "emu")
    page = laptop
    await sign_in(page, workspace.admin_token)
    card = page.locator(f"#connection-{connection['id']}")
    await expect(card).to_contain_text(connection["masked_key"])
    await expect(card).to_contain_text("by Owner")
    await expect(card).to_contain_text(f"OK, {len(MODELS)} models", timeout=SLOW_MS)

    new_key = provider_key()
    state.keys.add(new_key)
    await card.get_by_text("Replace the key").click()
    await card.get_by_label("New OpenAI-compatible API key for emu").fill(new_key)
    await card.get_by_role("button", name="Check and replace key").click()
    await expect(card.get_by_text(f"Key replaced. It now ends in {new_key[-4:]}.")).to_be_visible()

    await card.get_by_role("button", name="Sync models now for emu").click()
    await expect(card.get_by_text("Models listed again")).to_be_visible()
    await shot(page, "models-card-laptop")

    await card.get_by_role("link", name="Disconnect emu").click()
    await expect(page.get_by_role("heading", name="Disconnect emu?")).to_be_visible()
    await shot(page, "disconnect-confirm-laptop")
    still = await workspace.ok("GET", f"/keyvault/v1/connections/{connection['id']}")
    assert still["status"] == "active"

    await page.get_by_role("button", name="Yes, disconnect emu").click()
    await expect(page.get_by_role("status")).to_contain_text("Disconnected.")
    await expect(page.locator(f"#connection-{connection['id']}")).to_have_count(0)
    gone = await workspace.ok("GET", f"/keyvault/v1/connections/{connection['id']}")
    assert gone["status"] == "disconnected"


async def test_an_admin_gives_a_model_to_a_group_and_a_person_and_takes_it_back(
    stack: Stack, workspace: Workspace, provider: tuple[EmulatorState, str], laptop: Page
) -> None:
    """The access setting lists its rules, finds people and groups as the admin types, adds with Can View and removes one rule."""
    _, models, _ = await connected(workspace, provider, "team")
    model = next(m for m in models if m["upstream_id"] == "gpt-alpha")
    await workspace.ok("POST", f"/catalog/v1/models/{model['id']}/enable")
    await known_to_access(workspace, model["id"])
    group_name = unique("Marketing")
    group = await workspace.ok("POST", "/access/v1/groups", json={"name": group_name})
    ada = await workspace.ok(
        "POST",
        "/access/v1/members",
        json={"email": f"{unique('ada')}@example.test", "display_name": "Ada Lovelace"},
    )
    page = laptop
    await sign_in(page, workspace.admin_token)

    await page.get_by_role("link", name=f"Access to {model['name']}").click()
    await expect(page.get_by_role("heading", name=f"Access to {model['name']}")).to_be_visible()
    await expect(page.get_by_text("Nobody yet.")).to_be_visible()

    search = page.get_by_label("Find people and groups")
    await expect(page.get_by_role("button", name="Can View: All workspace members")).to_be_visible()
    await search.press_sequentially(group_name[:6].lower(), delay=40)
    # The results narrow as the admin types: everyone does not match "market".
    await expect(page.get_by_role("button", name="Can View: All workspace members")).to_have_count(
        0
    )
    await page.get_by_role("button", name=f"Can View: {group_name}").click()
    await expect(page.get_by_role("button", name=f"Remove {group_name}")).to_be_visible()

    search = page.get_by_label("Find people and groups")
    await expect(search).to_have_value(group_name[:6].lower())
    await search.fill("")
    await search.press_sequentially("lovel", delay=40)
    await page.get_by_role("button", name="Can View: Ada Lovelace").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("button", name="Remove Ada Lovelace")).to_be_visible()
    await shot(page, "access-laptop")

    rules = (await workspace.ok("GET", f"/access/v1/models/{model['id']}/rules"))["data"]
    assert {(r["principal_kind"], r["principal_id"]) for r in rules} == {
        ("group", group["id"]),
        ("user", ada["id"]),
    }

    await page.get_by_role("button", name=f"Remove {group_name}").click()
    await expect(page.get_by_role("status")).to_contain_text("Access removed.")
    await expect(page.get_by_role("button", name=f"Remove {group_name}")).to_have_count(0)
    rules = (await workspace.ok("GET", f"/access/v1/models/{model['id']}/rules"))["data"]
    assert [(r["principal_kind"], r["principal_id"]) for r in rules] == [("user", ada["id"])]

    await page.get_by_role("button", name="Can View: All workspace members").click()
    await expect(page.get_by_role("button", name="Remove All workspace members")).to_be_visible()


async def test_people_and_groups_pages_add_a_person_and_put_them_in_a_group(
    stack: Stack, workspace: Workspace, laptop: Page
) -> None:
    """An admin adds a person, creates a group, adds the person to it and takes them out, all through the pages."""
    page = laptop
    email = f"{unique('grace')}@example.test"
    group_name = unique("Research")
    await sign_in(page, workspace.admin_token)

    await page.get_by_role("link", name="People", exact=True).click()
    await page.get_by_label("Name", exact=True).fill("Grace Hopper")
    await page.get_by_label("Email").fill(email)
    await page.get_by_role("button", name="Add person").click()
    await expect(page.get_by_role("status")).to_contain_text("Member added.")
    await expect(page.get_by_text(email)).to_be_visible()
    await shot(page, "people-laptop")

    await page.get_by_role("link", name="Groups", exact=True).click()
    await page.get_by_label("Group name").fill(group_name)
    await page.get_by_role("button", name="Create group").click()
    await expect(page.get_by_role("heading", name=group_name)).to_be_visible()
    await page.get_by_label("Person").select_option(label=f"Grace Hopper ({email})")
    await page.get_by_role("button", name=f"Add to {group_name}").click()
    await expect(
        page.get_by_role("button", name=f"Remove Grace Hopper from {group_name}")
    ).to_be_visible()
    await shot(page, "group-laptop")

    groups = (await workspace.ok("GET", "/access/v1/groups"))["data"]
    group = next(g for g in groups if g["name"] == group_name)
    inside = (await workspace.ok("GET", f"/access/v1/groups/{group['id']}/members"))["data"]
    assert [m["email"] for m in inside] == [email]

    await page.get_by_role("button", name=f"Remove Grace Hopper from {group_name}").click()
    await expect(page.get_by_text("Nobody yet.")).to_be_visible()
    assert (await workspace.ok("GET", f"/access/v1/groups/{group['id']}/members"))["data"] == []


# the member


async def test_a_member_sees_only_their_own_tokens_and_the_models_they_may_use(
    stack: Stack, workspace: Workspace, provider: tuple[EmulatorState, str], laptop: Page
) -> None:
    """A member's console lists the granted model and their own tokens only, makes a token shown once with Copy, and revokes it."""
    _, models, _ = await connected(workspace, provider, "shared")
    granted, other = models[0], models[1]
    for model in (granted, other):
        await workspace.ok("POST", f"/catalog/v1/models/{model['id']}/enable")
        await known_to_access(workspace, model["id"])
    member = await workspace.member("Ada")
    await workspace.ok(
        "POST",
        f"/access/v1/models/{granted['id']}/rules",
        json={"principal_kind": "user", "principal_id": member["id"]},
    )
    token = await workspace.token_for(member["id"])
    admin_token_name = unique("admins-own")
    await workspace.ok("POST", "/access/v1/tokens", json={"name": admin_token_name})
    await eventually(lambda: listed(stack, token, granted["name"]), within=10)
    page = laptop

    await sign_in(page, token)
    await expect(page).to_have_url(re.compile(r"/console/models$"))
    await expect(page.get_by_role("link", name="People")).to_have_count(0)
    names = await page.locator("code.model-id").all_inner_texts()
    assert names == [granted["name"]]
    await shot(page, "member-models-laptop")

    response = await page.goto("/console/settings/models")
    assert response is not None and response.status == 403
    await expect(page.get_by_role("heading", name="For workspace admins")).to_be_visible()

    await page.get_by_role("link", name="My tokens").click()
    await expect(page.get_by_text("Signed in with this")).to_be_visible()
    assert admin_token_name not in await page.content()
    await page.get_by_label("Token name").fill("notebook")
    await page.get_by_role("button", name="Create token").click()
    new_token_field = page.get_by_label("New token", exact=True)
    await expect(page.get_by_role("heading", name="Your new token “notebook”")).to_be_focused()
    issued = await new_token_field.input_value()
    assert issued.startswith("byom_")
    await page.get_by_role("button", name="Copy").click()
    await expect(page.get_by_text("Copied to the clipboard.")).to_be_visible()
    assert await page.evaluate("navigator.clipboard.readText()") == issued
    await shot(page, "member-token-created-laptop")

    async with httpx.AsyncClient(base_url=stack.openai_base_url) as client:
        works = await client.get("/models", headers={"Authorization": f"Bearer {issued}"})
    assert works.status_code == 200

    await page.goto("/console/tokens")
    assert issued not in await page.content()
    await page.get_by_role("button", name="Revoke notebook").click()
    await expect(page.get_by_role("status")).to_contain_text("Token revoked.")
    await expect(page.get_by_role("button", name="Revoke notebook")).to_have_count(0)

    async def refused() -> bool:
        async with httpx.AsyncClient(base_url=stack.openai_base_url) as client:
            answer = await client.get("/models", headers={"Authorization": f"Bearer {issued}"})
        return answer.status_code == 401

    await eventually(refused, within=5)


# phone width


async def test_every_page_fits_a_phone_screen(
    stack: Stack, workspace: Workspace, provider: tuple[EmulatorState, str], phone: Page
) -> None:
    """At 390 pixels wide nothing scrolls sideways, and the connect form and the switches still work."""
    _, models, _ = await connected(workspace, provider, "pocket")
    model = models[0]
    await known_to_access(workspace, model["id"])
    page = phone
    await page.goto("/console/sign-in")
    assert await fits_the_width(page)
    await shot(page, "sign-in-phone")
    await sign_in(page, workspace.admin_token)

    await page.get_by_role("button", name="Connect Amazon Bedrock").click()
    await expect(page.get_by_label("AWS region")).to_have_value("us-east-1")
    assert await fits_the_width(page)
    await shot(page, "models-phone")

    switch = page.get_by_role("switch", name=model["name"])
    await switch.click()
    await expect(page.get_by_role("switch", name=model["name"])).to_have_attribute(
        "aria-checked", "true"
    )

    for path, name in (
        (f"/console/settings/models/{model['id']}/access", "access-phone"),
        ("/console/people", "people-phone"),
        ("/console/groups", "groups-phone"),
        ("/console/tokens", "tokens-phone"),
    ):
        await page.goto(path)
        assert await fits_the_width(page), path
        await shot(page, name)


# the session and CSRF


def csrf_of(html: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert found, "the page carries no CSRF token"
    return found.group(1)


@contextlib.asynccontextmanager
async def signed_in_client(stack: Stack, token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url("console"), timeout=30) as client:
        page = await client.get("/console/sign-in")
        answer = await client.post(
            "/console/sign-in", data={"token": token, "csrf_token": csrf_of(page.text)}
        )
        assert answer.status_code == 303, answer.text
        assert token not in answer.headers["location"]
        yield client


async def test_the_session_cookie_is_httponly_samesite_strict_and_secure_over_https(
    stack: Stack,
) -> None:
    """The session cookie is HttpOnly, SameSite=Strict, scoped to /console/, and Secure when the request came over TLS."""
    async with httpx.AsyncClient(base_url=stack.url("console")) as client:
        plain = await client.get("/console/sign-in")
    async with httpx.AsyncClient(base_url=stack.url("console")) as client:
        behind_tls = await client.get("/console/sign-in", headers={"X-Forwarded-Proto": "https"})

    cookie = plain.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/console/" in cookie
    assert "secure" not in cookie.replace("samesite", "")
    assert "; secure" in behind_tls.headers["set-cookie"].lower()
    assert "no-store" in plain.headers["cache-control"]
    assert "script-src 'self'" in plain.headers["content-security-policy"]


async def test_every_post_without_the_sessions_csrf_token_is_refused(
    stack: Stack, workspace: Workspace
) -> None:
    """A form sent without the CSRF token, or with another session's, is refused in words and changes nothing."""
    async with (
        signed_in_client(stack, workspace.admin_token) as client,
        httpx.AsyncClient(base_url=stack.url("console")) as stranger,
    ):
        page = await client.get("/console/tokens")
        own = csrf_of(page.text)
        others = csrf_of((await stranger.get("/console/sign-in")).text)

        missing = await client.post("/console/tokens", data={"name": "no-csrf"})
        foreign = await client.post(
            "/console/tokens", data={"name": "foreign", "csrf_token": others}
        )
        in_header = await client.post(
            "/console/tokens", data={"name": "header"}, headers={"X-CSRF-Token": own}
        )
        sign_in_without = await stranger.post(
            "/console/sign-in", data={"token": workspace.admin_token}
        )

    for refused in (missing, foreign, sign_in_without):
        assert refused.status_code == 403
        assert "Reload the page and try again." in refused.text
        assert '{"' not in refused.text
    assert in_header.status_code == 200
    names = {t["name"] for t in (await workspace.ok("GET", "/access/v1/tokens"))["data"]}
    assert "header" in names
    assert not names & {"no-csrf", "foreign"}


async def test_the_gateway_token_appears_in_no_page_and_no_url(
    stack: Stack, workspace: Workspace, provider: tuple[EmulatorState, str]
) -> None:
    """After sign-in the admin's token is in no page, no redirect and no cookie in the clear."""
    await connected(workspace, provider, "quiet")
    async with signed_in_client(stack, workspace.admin_token) as client:
        cookie = client.cookies.get("byom_console") or ""
        pages = [
            await client.get(path, follow_redirects=True)
            for path in (
                "/console/",
                "/console/settings/models",
                "/console/people",
                "/console/groups",
                "/console/tokens",
                "/console/models",
            )
        ]

    assert cookie and workspace.admin_token not in cookie
    for page in pages:
        assert page.status_code == 200, page.url
        assert workspace.admin_token not in page.text
        assert workspace.admin_token not in str(page.url)
        assert all(workspace.admin_token not in str(r.url) for r in page.history)


async def test_a_revoked_token_ends_its_console_session(stack: Stack, workspace: Workspace) -> None:
    """Once the session's token is revoked, the next page sends the visitor to sign in again, saying why."""
    member = await workspace.member("Lin")
    token = await workspace.token_for(member["id"])
    async with signed_in_client(stack, token) as client:
        assert (await client.get("/console/tokens")).status_code == 200
        me = await workspace.client.get(
            "/access/v1/me", headers={"Authorization": f"Bearer {token}"}
        )
        await workspace.ok("DELETE", f"/access/v1/tokens/{me.json()['token_id']}")

        ended = await client.get("/console/tokens")
        sign_in_again = await client.get(ended.headers["location"])

    assert ended.status_code == 303
    assert ended.headers["location"] == "/console/sign-in?ended=1"
    assert "Your sign-in has ended." in sign_in_again.text


async def test_a_service_that_does_not_answer_is_named_in_words(
    stack: Stack, workspace: Workspace, laptop: Page
) -> None:
    """With the catalog down, the Models page says which service is not answering, with no JSON and no traceback."""
    page = laptop
    await sign_in(page, workspace.admin_token)
    stack.stop("catalog")
    try:
        response = await page.goto("/console/settings/models")
        assert response is not None and response.status == 503
        alert = page.get_by_role("alert")
        await expect(alert).to_have_text(
            "The model catalog is not answering. Try again in a moment."
        )
        await shot(page, "catalog-down-laptop")
        html = await page.content()
        assert "Traceback" not in html
        assert '{"' not in await page.locator("main").inner_text()
    finally:
        stack.start("catalog")
