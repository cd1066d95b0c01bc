"""Who is calling an admin API: gateway tokens checked by the access service.

keyvault and catalog do not own people or tokens. They ask access through its one
documented internal route, ``POST /access/internal/v1/introspect``, presenting a
service credential, and cache a positive answer for a few seconds. A revoked token
therefore keeps working on these admin routes for at most that long; the proxy does not
depend on this path: it follows the token events.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, Header, Request

from shared.http import ApiError
from shared.secrets import GatewayToken
from shared.service_auth import ServiceSigner

TOKEN_PREFIX = "byom_"  # noqa: S105 - the public prefix of every token, not a secret
ADMIN_ROLES = frozenset({"owner", "admin"})


@dataclass(frozen=True, slots=True)
class Principal:
    workspace_id: str
    user_id: str
    role: str
    token_id: str

    @property
    def is_admin(self) -> bool:
        return self.role in ADMIN_ROLES


def token_hash(token: str) -> str:
    """Tokens are long random strings, so a plain digest is enough to store and look up."""
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_token(authorization: str | None, api_key: str | None) -> GatewayToken | None:
    """The token from ``Authorization: Bearer`` or ``x-api-key``, checked the same way."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return GatewayToken(value.strip())
        return None

    if api_key and api_key.strip():
        return GatewayToken(api_key.strip())

    return None


class Introspector:
    """Asks access who a token belongs to, with a short positive cache."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        access_url: str,
        signer: ServiceSigner,
        *,
        service: str,
        cache_seconds: float = 5.0,
    ) -> None:
        self._client = client
        self._url = access_url.rstrip("/") + "/access/internal/v1/introspect"
        self._signer = signer
        self._service = service
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Principal]] = {}

    async def principal(self, token: GatewayToken) -> Principal | None:
        digest = token_hash(token.reveal())
        cached = self._cache.get(digest)
        if cached and cached[0] > time.monotonic():
            return cached[1]

        credential = self._signer.mint(self._service, "access")
        try:
            response = await self._client.post(
                self._url,
                json={"token_hash": digest},
                headers={"Authorization": f"Bearer {credential}"},
            )
        except httpx.HTTPError as error:
            raise ApiError(
                503, "access_unavailable", "the access service is unreachable"
            ) from error

        if response.status_code == 404:
            self._cache.pop(digest, None)
            return None

        if response.status_code != 200:
            raise ApiError(
                503, "access_unavailable", "the access service could not check the token"
            )

        principal = Principal(**response.json())
        self._cache[digest] = (time.monotonic() + self._cache_seconds, principal)
        return principal


async def _authenticate(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Principal:
    token = bearer_token(authorization, x_api_key)
    if token is None:
        raise ApiError(401, "unauthenticated", "a gateway token is required")

    introspector: Introspector = request.app.state.introspector
    principal = await introspector.principal(token)
    if principal is None:
        raise ApiError(401, "unauthenticated", "the gateway token is not valid")

    return principal


async def _require_admin(principal: Annotated[Principal, Depends(_authenticate)]) -> Principal:
    if not principal.is_admin:
        raise ApiError(403, "forbidden", "this route is for workspace admins")

    return principal


CurrentPrincipal = Annotated[Principal, Depends(_authenticate)]
AdminPrincipal = Annotated[Principal, Depends(_require_admin)]
