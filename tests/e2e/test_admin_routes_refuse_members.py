"""Every admin route of every service refuses members (403) and anonymous callers (401).

The routes come from each service's own OpenAPI document, so a route added later is
tried as well: unless it is listed below as public, operator-only or open to every
member, it is treated as an admin route and must refuse. Path parameters are filled
with real ids of the workspace, so a route that forgot its check would answer with
data, not with a 404 that hides the omission.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.e2e.flows import ReadyModel, grant_when_known, ready_model
from tests.emulator import EmulatorState
from tests.stack import Stack
from tests.support import Workspace, unique

pytestmark = pytest.mark.e2e

DOCUMENTS = (
    "/access/openapi.json",
    "/keyvault/openapi.json",
    "/catalog/openapi.json",
    "/proxy/openapi.json",
)
PUBLIC = {
    ("GET", f"/{service}/{probe}")
    for service in ("access", "keyvault", "catalog", "proxy")
    for probe in ("healthz", "readyz")
}
OPERATOR = {
    ("POST", "/access/v1/workspaces"),
    ("POST", "/keyvault/v1/keyring/rewrap"),
    # The install's own connections and the managed models it offers to workspaces.
    ("POST", "/keyvault/v1/install/connections"),
    ("GET", "/keyvault/v1/install/connections"),
    ("GET", "/keyvault/v1/install/connections/{connection_id}"),
    ("PUT", "/keyvault/v1/install/connections/{connection_id}/key"),
    ("DELETE", "/keyvault/v1/install/connections/{connection_id}"),
    ("GET", "/catalog/v1/install/connections"),
    ("GET", "/catalog/v1/install/connections/{connection_id}"),
    ("POST", "/catalog/v1/install/connections/{connection_id}/sync"),
    ("GET", "/catalog/v1/install/models"),
    ("PUT", "/catalog/v1/install/models/{model_id}/offer"),
    ("DELETE", "/catalog/v1/install/models/{model_id}/offer"),
}
# Open to every member, for their own things: refused only without a token.
ANY_MEMBER = {
    ("GET", "/access/v1/me"),
    ("GET", "/access/v1/tokens"),
    ("POST", "/access/v1/tokens"),
    ("DELETE", "/access/v1/tokens/{token_id}"),
}
# The model API is OpenAI's, served by the proxy ahead of its framework and so absent
# from the proxy's OpenAPI document; every member may call it, nobody without a token.
MODEL_API = {
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model_name}"),
    ("POST", "/v1/chat/completions"),
}
_PARAMETER = re.compile(r"\{([^}]+)\}")
_METHODS = {"get", "post", "put", "patch", "delete"}


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    required_query: tuple[str, ...]
    has_body: bool

    def __str__(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def internal(self) -> bool:
        return "/internal/" in self.template


async def documented_routes(gateway: httpx.AsyncClient) -> list[Route]:
    routes = []
    for document in DOCUMENTS:
        response = await gateway.get(document)
        assert response.status_code == 200, document
        for template, operations in response.json()["paths"].items():
            for method, operation in operations.items():
                if method not in _METHODS:
                    continue
                required_query = tuple(
                    p["name"]
                    for p in operation.get("parameters", [])
                    if p["in"] == "query" and p.get("required")
                )
                routes.append(
                    Route(method.upper(), template, required_query, "requestBody" in operation)
                )
    return routes


def fill(route: Route, ids: dict[str, str]) -> str:
    def real_id(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in ids:
            pytest.fail(f"{route}: no real value for path parameter {name!r}; add one to the test")
        return ids[name]

    return _PARAMETER.sub(real_id, route.template)


async def attempt(
    gateway: httpx.AsyncClient, route: Route, ids: dict[str, str], headers: dict[str, str]
) -> httpx.Response:
    kwargs: dict[str, Any] = {"headers": headers}
    if route.required_query:
        kwargs["params"] = {name: "a" for name in route.required_query}
    if route.has_body:
        kwargs["json"] = {}
    return await gateway.request(route.method, fill(route, ids), **kwargs)


@pytest.fixture
async def ready(
    stack: Stack, workspace: Workspace, emulator: tuple[EmulatorState, str]
) -> ReadyModel:
    return await ready_model(stack, workspace, emulator)


@pytest.fixture
async def ids(ready: ReadyModel) -> dict[str, str]:
    """A real id for every path parameter the documents use."""
    ws = ready.workspace
    group = await ws.ok("POST", "/access/v1/groups", json={"name": unique("team")})
    rule = await grant_when_known(
        ws, ready.model["id"], {"principal_kind": "group", "principal_id": group["id"]}
    )
    tokens = await ws.ok("GET", f"/access/v1/members/{ready.member['id']}/tokens")
    alias = await ws.ok(
        "PUT", f"/catalog/v1/aliases/{unique('alias')}", json={"model_id": ready.model["id"]}
    )
    return {
        "name": alias["name"],
        "user_id": ready.member["id"],
        "token_id": tokens["data"][0]["id"],
        "group_id": group["id"],
        "model_id": ready.model["id"],
        "rule_id": rule["id"],
        "connection_id": ready.connection["id"],
        "model_name": ready.model["name"],
    }


async def test_every_documented_route_is_listed_and_admin_ones_are_the_default(
    gateway: httpx.AsyncClient,
) -> None:
    """The exceptions listed above name routes that exist, and every service documents its own."""
    routes = {(r.method, r.template) for r in await documented_routes(gateway)}

    assert routes >= ANY_MEMBER | OPERATOR
    assert {t.split("/")[1] for _, t in routes} >= {"access", "keyvault", "catalog"}


async def test_admin_routes_refuse_members_and_anonymous_callers(
    gateway: httpx.AsyncClient, ready: ReadyModel, ids: dict[str, str]
) -> None:
    """Each admin route answers 403 to a member's token (in either header) and 401 to no
    token; each read also answers an admin, so the refusal is the member's role."""
    admin_routes = [
        r
        for r in await documented_routes(gateway)
        if not r.internal and (r.method, r.template) not in PUBLIC | OPERATOR | ANY_MEMBER
    ]
    assert len(admin_routes) >= 30

    wrong = []
    for route in admin_routes:
        as_member = await attempt(gateway, route, ids, {"Authorization": f"Bearer {ready.token}"})
        by_api_key = await attempt(gateway, route, ids, {"x-api-key": ready.token})
        anonymous = await attempt(gateway, route, ids, {})
        if (as_member.status_code, by_api_key.status_code, anonymous.status_code) != (
            403,
            403,
            401,
        ):
            wrong.append(
                f"{route}: {as_member.status_code}/{by_api_key.status_code}/{anonymous.status_code}"
            )
        if route.method == "GET":
            as_admin = await attempt(
                gateway, route, ids, {"Authorization": f"Bearer {ready.workspace.admin_token}"}
            )
            if as_admin.status_code != 200:
                wrong.append(f"{route}: the admin got {as_admin.status_code}")

    assert not wrong, "\n".join(wrong)


async def test_internal_routes_refuse_gateway_tokens_and_anonymous_callers(
    gateway: httpx.AsyncClient, ready: ReadyModel, ids: dict[str, str]
) -> None:
    """Internal routes want a service credential: a member's or an owner's token gets 403,
    no credential 401."""
    internal = [r for r in await documented_routes(gateway) if r.internal]
    assert {r.template.split("/")[1] for r in internal} == {"access", "keyvault"}

    wrong = []
    for route in internal:
        for token in (ready.token, ready.workspace.admin_token):
            response = await attempt(gateway, route, ids, {"Authorization": f"Bearer {token}"})
            if response.status_code != 403:
                wrong.append(f"{route} with a gateway token: {response.status_code}")
        anonymous = await attempt(gateway, route, ids, {})
        if anonymous.status_code != 401:
            wrong.append(f"{route} anonymous: {anonymous.status_code}")

    assert not wrong, "\n".join(wrong)


async def test_operator_and_member_routes_refuse_anonymous_callers(
    gateway: httpx.AsyncClient, ready: ReadyModel, ids: dict[str, str]
) -> None:
    """The operator route refuses a member and an owner as much as nobody; the routes
    every member may use, the model API among them, still want a token."""
    wrong = []
    for route in [
        r for r in await documented_routes(gateway) if (r.method, r.template) in OPERATOR
    ]:
        for headers in (
            {},
            {"Authorization": f"Bearer {ready.token}"},
            {"Authorization": f"Bearer {ready.workspace.admin_token}"},
        ):
            response = await attempt(gateway, route, ids, headers)
            if response.status_code not in (401, 403):
                wrong.append(f"{route} with {sorted(headers)}: {response.status_code}")
    open_to_members = [
        r for r in await documented_routes(gateway) if (r.method, r.template) in ANY_MEMBER
    ]
    open_to_members += [Route(m, t, (), m == "POST") for m, t in sorted(MODEL_API)]
    for route in open_to_members:
        response = await attempt(gateway, route, ids, {})
        if response.status_code != 401:
            wrong.append(f"{route} anonymous: {response.status_code}")

    assert not wrong, "\n".join(wrong)
