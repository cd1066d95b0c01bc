"""Small helpers the integration and end-to-end tests share."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, within: float = 10.0, interval: float = 0.05
) -> T:
    """Poll until ``check`` returns something other than None or False, or fail."""
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        last = await check()
        if last is not None and last is not False:
            return last  # type: ignore[return-value]
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {within}s (last result: {last!r})")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Workspace:
    """A fresh workspace and its owner's admin client."""

    id: str
    admin_token: str
    owner_id: str
    client: httpx.AsyncClient

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.admin_token}", **kwargs.pop("headers", {})}
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.call(method, path, **kwargs)
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    async def member(self, name: str, role: str = "member") -> dict[str, Any]:
        email = f"{unique(name)}@example.test"
        return dict(
            await self.ok(
                "POST",
                "/access/v1/members",
                json={"email": email, "display_name": name, "role": role},
            )
        )

    async def token_for(self, user_id: str) -> str:
        issued = await self.ok(
            "POST", f"/access/v1/members/{user_id}/tokens", json={"name": unique("token")}
        )
        return str(issued["token"])


async def new_workspace(
    client: httpx.AsyncClient, operator_token: str, prefix: str = "acme"
) -> Workspace:
    """A workspace of the caller's own with an owner, made by the install operator."""
    response = await client.post(
        "/access/v1/workspaces",
        json={
            "name": unique(prefix),
            "owner_email": f"{unique('owner')}@example.test",
            "owner_name": "Owner",
        },
        headers={"Authorization": f"Bearer {operator_token}"},
    )
    assert response.status_code == 201, response.text
    created = response.json()
    return Workspace(
        id=created["workspace"]["id"],
        admin_token=created["token"]["token"],
        owner_id=created["owner"]["id"],
        client=client,
    )


class PrefixRouter(httpx.AsyncBaseTransport):
    """Sends each request to the service that owns its path prefix, as the Ingress does.

    Tests then talk to one base URL, like users do, while each service still runs as its
    own process on its own port.
    """

    def __init__(self, urls: dict[str, str]) -> None:
        self._targets = {f"/{name}/": httpx.URL(url) for name, url in urls.items()}
        self._model_api = httpx.URL(urls["proxy"]) if "proxy" in urls else None
        self._transport = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = self._target(request.url.path)
        request.url = request.url.copy_with(
            scheme=target.scheme, host=target.host, port=target.port
        )
        request.headers["host"] = f"{target.host}:{target.port}"
        return await self._transport.handle_async_request(request)

    def _target(self, path: str) -> httpx.URL:
        for prefix, url in self._targets.items():
            if path.startswith(prefix):
                return url
        if self._model_api is not None and path.startswith("/v1/"):
            return self._model_api
        raise httpx.ConnectError(f"no service serves {path}")

    async def aclose(self) -> None:
        await self._transport.aclose()


def gateway_client(urls: dict[str, str], **kwargs: Any) -> httpx.AsyncClient:
    """An httpx client for the whole gateway at one address."""
    return httpx.AsyncClient(
        base_url="http://gateway.invalid", transport=PrefixRouter(urls), timeout=30, **kwargs
    )
