"""Who is calling access: the operator, a service, or the holder of a gateway token.

- The operator presents ``BYOM_OPERATOR_TOKEN``; only the operator creates workspaces.
- Services present a short-lived ``svc1.`` credential meant for "access" on the
  internal route; a gateway token there is refused, whoever holds it.
- Everyone else presents a gateway token. access answers who owns it from its own
  tables, without a cache, so a revocation or a deactivation counts from the next request.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from services.access import queries
from services.access.settings import Settings
from shared.events.envelope import utcnow
from shared.http import ApiError
from shared.principal import TOKEN_PREFIX, Principal, bearer_token, token_hash
from shared.secrets import GatewayToken
from shared.service_auth import InvalidServiceCredential, ServiceSigner

AUDIENCE = "access"


class TokenDirectory:
    """Answers the question shared.principal's dependencies ask an Introspector."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def lookup(self, digest: str) -> Principal | None:
        async with self._engine.connect() as conn:
            return await queries.principal_for(conn, digest, utcnow())

    async def principal(self, token: GatewayToken) -> Principal | None:
        return await self.lookup(token_hash(token.reveal()))


def _same_secret(presented: str, expected: str) -> bool:
    # Comparing digests keeps the comparison constant-time whatever the lengths.
    return hmac.compare_digest(
        hashlib.sha256(presented.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


async def _require_operator(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> None:
    settings: Settings = request.app.state.settings
    expected = settings.operator_token.get_secret_value()
    presented = bearer_token(authorization, None)
    if not expected or presented is None or not _same_secret(presented.reveal(), expected):
        raise ApiError(401, "unauthenticated", "the operator token is required")


async def _require_service(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> str:
    presented = bearer_token(authorization, None)
    if presented is None:
        raise ApiError(401, "unauthenticated", "a service credential is required")

    if presented.reveal().startswith(TOKEN_PREFIX):
        raise ApiError(403, "forbidden", "internal routes accept service credentials only")

    signer: ServiceSigner | None = request.app.state.signer
    if signer is None:
        raise ApiError(401, "unauthenticated", "service credentials are not configured")

    try:
        return signer.verify(presented.reveal(), AUDIENCE)
    except InvalidServiceCredential as error:
        raise ApiError(401, "unauthenticated", "the service credential is not valid") from error


Operator = Depends(_require_operator)
CallingService = Annotated[str, Depends(_require_service)]
