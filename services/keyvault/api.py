"""keyvault's HTTP routes: the admin API, the internal key route, and health.

Admin routes (``/keyvault/v1``) take a workspace admin's gateway token and only ever show
a masked key. The install routes (``/keyvault/v1/install``) are the same for the install
operator's own connections, whose models the catalog offers to workspaces as managed
models; they take the operator's token. The internal route (``/keyvault/internal/v1``) hands out a plain key, and
takes nothing but a service credential from a service allowed to read keys. The keyring
route (``/keyvault/v1/keyring``) acts on every workspace's secrets at once, so it takes
the install operator's token, never a workspace admin's.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import datetime
from typing import Annotated, Final

import structlog
from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, SecretStr
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from services.keyvault.domain import (
    INSTALL_SCOPE,
    Connect,
    Connection,
    Disconnect,
    KeyReads,
    RotateKey,
    VerificationFailed,
    provider_key,
)
from services.keyvault.errors import (
    ConnectionDisconnected,
    ConnectionNameTaken,
    ConnectionNotFound,
    InvalidConnection,
    KeyvaultError,
    SecretUnreadable,
)
from services.keyvault.handlers import Handlers
from services.keyvault.rewrapping import Rewrapper
from shared.events.store import Actor
from shared.http import ApiError, error_body
from shared.principal import TOKEN_PREFIX, AdminPrincipal, Principal, bearer_token
from shared.service_auth import InvalidServiceCredential, ServiceSigner

log = structlog.get_logger(__name__)

_READY_TIMEOUT_SECONDS: Final = 2.0
_ERRORS: Final[dict[type[KeyvaultError], tuple[int, str]]] = {
    InvalidConnection: (422, "invalid_request"),
    ConnectionNotFound: (404, "connection_not_found"),
    ConnectionNameTaken: (409, "connection_name_taken"),
    ConnectionDisconnected: (409, "connection_disconnected"),
    SecretUnreadable: (500, "secret_unreadable"),
}
_VERIFICATION_ERRORS: Final = {
    "rejected": (400, "key_rejected"),
    "unavailable": (502, "provider_unavailable"),
    "unexpected": (502, "provider_bad_response"),
}


_API_KEY_DESCRIPTION: Final = (
    "the provider key, shown back only masked; leave it out for an openai-compatible "
    "server that takes no key"
)


class ConnectRequest(BaseModel):
    provider: str = Field(
        description="the provider kind: openai, anthropic, openai-compatible, ..."
    )
    name: str = Field(description="unique among the workspace's active connections")
    base_url: str | None = Field(default=None, description="required for openai-compatible")
    api_key: SecretStr | None = Field(default=None, description=_API_KEY_DESCRIPTION)


class RotateKeyRequest(BaseModel):
    api_key: SecretStr | None = Field(default=None, description=_API_KEY_DESCRIPTION)


class KeyReadsOut(BaseModel):
    """How often one gateway service was handed one version of the connection's key."""

    reader: str = Field(description="the service that read the key: proxy, catalog")
    secret_version: int
    read_count: int
    first_read_at: datetime
    last_read_at: datetime

    @classmethod
    def of(cls, reads: KeyReads) -> KeyReadsOut:
        return cls(
            reader=reads.reader,
            secret_version=reads.secret_version,
            read_count=reads.read_count,
            first_read_at=reads.first_read_at,
            last_read_at=reads.last_read_at,
        )


class ConnectionOut(BaseModel):
    id: str
    provider: str
    name: str
    base_url: str
    masked_key: str = Field(description="prefix and last four characters; (none) without a key")
    fingerprint: str = Field(description="keyed digest of the key; empty without a key")
    has_key: bool
    status: str
    secret_version: int = Field(description="1 at connect, one more at each rotation")
    connected_at: datetime
    connected_by: str
    key_rotated_at: datetime | None
    disconnected_at: datetime | None
    read_count: int
    last_read_at: datetime | None
    reads: list[KeyReadsOut] = Field(description="who read which version of the key, how often")

    @classmethod
    def of(cls, connection: Connection) -> ConnectionOut:
        return cls(
            id=connection.id,
            provider=connection.provider,
            name=connection.name,
            base_url=connection.base_url,
            masked_key=connection.masked_key,
            fingerprint=connection.fingerprint,
            has_key=bool(connection.fingerprint),
            status=connection.status,
            secret_version=connection.secret_version,
            connected_at=connection.connected_at,
            connected_by=connection.connected_by,
            key_rotated_at=connection.key_rotated_at,
            disconnected_at=connection.disconnected_at,
            read_count=connection.read_count,
            last_read_at=connection.last_read_at,
            reads=[KeyReadsOut.of(r) for r in connection.reads],
        )


class ConnectionList(BaseModel):
    data: list[ConnectionOut]


class RewrapOut(BaseModel):
    keyring_version: str = Field(description="the active keyring version secrets moved to")
    rewrapped: int
    unreadable: list[str] = Field(description="ids of connections whose secret did not open")
    event_id: str = Field(description="the keyring.secrets_rewrapped event recording the run")


class KeyOut(BaseModel):
    connection_id: str
    workspace_id: str
    provider: str
    base_url: str
    api_key: str


def _handlers(request: Request) -> Handlers:
    handlers: Handlers = request.app.state.handlers
    return handlers


async def _key_reader(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> str:
    """The calling service's name, if its credential is good and it may read keys."""
    scheme, _, credential = (authorization or "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise ApiError(401, "unauthenticated", "a service credential is required")

    if credential.startswith(TOKEN_PREFIX):
        raise ApiError(403, "forbidden", "this route is for gateway services, not gateway tokens")

    signer: ServiceSigner = request.app.state.service_signer
    try:
        service = signer.verify(credential, "keyvault")
    except InvalidServiceCredential:
        raise ApiError(401, "unauthenticated", "the service credential is not valid") from None

    if service not in request.app.state.key_readers:
        raise ApiError(403, "forbidden", f"service {service!r} may not read provider keys")

    return service


async def _operator(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> None:
    """The install operator's token, and only in ``Authorization``; a gateway token is 403."""
    operator_token: SecretStr = request.app.state.operator_token
    expected = operator_token.get_secret_value()
    presented = bearer_token(authorization, x_api_key)
    if presented is None:
        raise ApiError(401, "unauthenticated", "the operator token is required")

    if expected and authorization and _same_secret(presented.reveal(), expected):
        return

    if presented.reveal().startswith(TOKEN_PREFIX):
        raise ApiError(
            403, "forbidden", "this route is the install operator's, not a workspace admin's"
        )

    raise ApiError(401, "unauthenticated", "the operator token is required")


def _rewrapper(request: Request) -> Rewrapper:
    rewrapper: Rewrapper = request.app.state.rewrapper
    return rewrapper


HandlersDep = Annotated[Handlers, Depends(_handlers)]
KeyReader = Annotated[str, Depends(_key_reader)]
Operator = Annotated[None, Depends(_operator)]
RewrapperDep = Annotated[Rewrapper, Depends(_rewrapper)]

health = APIRouter(prefix="/keyvault", tags=["health"])
admin = APIRouter(prefix="/keyvault/v1", tags=["connections"])
internal = APIRouter(prefix="/keyvault/internal/v1", tags=["internal"])
operator = APIRouter(prefix="/keyvault/v1/keyring", tags=["keyring"])
install = APIRouter(prefix="/keyvault/v1/install", tags=["install connections"])


@health.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    try:
        async with asyncio.timeout(_READY_TIMEOUT_SECONDS):
            async with request.app.state.runtime.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError):
        return JSONResponse({"status": "database_unavailable"}, 503)

    return JSONResponse({"status": "ok"})


@admin.post("/connections", status_code=201, response_model=ConnectionOut)
async def connect(
    body: ConnectRequest, principal: AdminPrincipal, handlers: HandlersDep
) -> ConnectionOut:
    command = Connect(
        workspace_id=principal.workspace_id,
        provider=body.provider,
        name=body.name,
        base_url=body.base_url,
        api_key=provider_key(_pasted(body.api_key)),
    )
    result = await handlers.connect(command, _actor(principal))
    return ConnectionOut.of(_succeeded(result))


@admin.get("/connections", response_model=ConnectionList)
async def list_connections(principal: AdminPrincipal, handlers: HandlersDep) -> ConnectionList:
    connections = await handlers.connections(principal.workspace_id)
    return ConnectionList(data=[ConnectionOut.of(c) for c in connections])


@admin.get("/connections/{connection_id}", response_model=ConnectionOut)
async def get_connection(
    connection_id: str, principal: AdminPrincipal, handlers: HandlersDep
) -> ConnectionOut:
    return ConnectionOut.of(await handlers.connection(principal.workspace_id, connection_id))


@admin.put("/connections/{connection_id}/key", response_model=ConnectionOut)
async def rotate_key(
    connection_id: str, body: RotateKeyRequest, principal: AdminPrincipal, handlers: HandlersDep
) -> ConnectionOut:
    command = RotateKey(
        workspace_id=principal.workspace_id,
        connection_id=connection_id,
        api_key=provider_key(_pasted(body.api_key)),
    )
    result = await handlers.rotate_key(command, _actor(principal))
    return ConnectionOut.of(_succeeded(result))


@admin.delete("/connections/{connection_id}", status_code=204)
async def disconnect(
    connection_id: str, principal: AdminPrincipal, handlers: HandlersDep
) -> Response:
    command = Disconnect(workspace_id=principal.workspace_id, connection_id=connection_id)
    await handlers.disconnect(command, _actor(principal))
    return Response(status_code=204)


@install.post("/connections", status_code=201, response_model=ConnectionOut)
async def connect_install(
    body: ConnectRequest, _operator: Operator, handlers: HandlersDep
) -> ConnectionOut:
    """Connect a provider for the whole install; its models can be offered to workspaces."""
    command = Connect(
        workspace_id=INSTALL_SCOPE,
        provider=body.provider,
        name=body.name,
        base_url=body.base_url,
        api_key=provider_key(_pasted(body.api_key)),
    )
    result = await handlers.connect(command, _system_actor("operator"))
    return ConnectionOut.of(_succeeded(result))


@install.get("/connections", response_model=ConnectionList)
async def list_install_connections(_operator: Operator, handlers: HandlersDep) -> ConnectionList:
    connections = await handlers.connections(INSTALL_SCOPE)
    return ConnectionList(data=[ConnectionOut.of(c) for c in connections])


@install.get("/connections/{connection_id}", response_model=ConnectionOut)
async def get_install_connection(
    connection_id: str, _operator: Operator, handlers: HandlersDep
) -> ConnectionOut:
    return ConnectionOut.of(await handlers.connection(INSTALL_SCOPE, connection_id))


@install.put("/connections/{connection_id}/key", response_model=ConnectionOut)
async def rotate_install_key(
    connection_id: str, body: RotateKeyRequest, _operator: Operator, handlers: HandlersDep
) -> ConnectionOut:
    command = RotateKey(
        workspace_id=INSTALL_SCOPE,
        connection_id=connection_id,
        api_key=provider_key(_pasted(body.api_key)),
    )
    result = await handlers.rotate_key(command, _system_actor("operator"))
    return ConnectionOut.of(_succeeded(result))


@install.delete("/connections/{connection_id}", status_code=204)
async def disconnect_install(
    connection_id: str, _operator: Operator, handlers: HandlersDep
) -> Response:
    """Disconnect and shred the key: every workspace's managed models of it stop at once."""
    command = Disconnect(workspace_id=INSTALL_SCOPE, connection_id=connection_id)
    await handlers.disconnect(command, _system_actor("operator"))
    return Response(status_code=204)


@operator.post("/rewrap", response_model=RewrapOut)
async def rewrap(_operator: Operator, rewrapper: RewrapperDep) -> RewrapOut:
    """Move every stored secret to the active keyring entry, as the rewrap command does.

    Safe while keyvault serves and beside another rewrap. It answers when every secret
    has been tried; one that does not open is listed and left where it is.
    """
    report = await rewrapper.rewrap(_system_actor("operator"), via="api")
    return RewrapOut(
        keyring_version=report.keyring_version,
        rewrapped=report.rewrapped,
        unreadable=list(report.unreadable),
        event_id=report.event_id,
    )


@internal.get("/connections/{connection_id}/key", response_model=KeyOut)
async def release_key(
    connection_id: str, service: KeyReader, handlers: HandlersDep, response: Response
) -> KeyOut:
    release = await handlers.release_key(connection_id, reader=service)
    response.headers["Cache-Control"] = "no-store"
    # The one place a plain key leaves keyvault.
    return KeyOut(
        connection_id=release.connection_id,
        workspace_id=release.workspace_id,
        provider=release.provider,
        base_url=release.base_url,
        api_key=release.api_key.reveal(),
    )


def _pasted(api_key: SecretStr | None) -> str | None:
    return None if api_key is None else api_key.get_secret_value()


def install_keyvault_errors(app: FastAPI) -> None:
    """Turn keyvault's own errors into answers, in this one place."""

    @app.exception_handler(KeyvaultError)
    async def _keyvault_error(request: Request, error: KeyvaultError) -> JSONResponse:
        status, code = _ERRORS.get(type(error), (500, "keyvault_error"))
        if status >= 500:
            log.error("keyvault_error", code=code, reason=str(error), path=request.url.path)
        return JSONResponse(error_body(code, str(error)), status)


def _succeeded(result: Connection | VerificationFailed) -> Connection:
    if isinstance(result, VerificationFailed):
        status, code = _VERIFICATION_ERRORS[result.outcome]
        raise ApiError(status, code, result.message)

    return result


def _actor(principal: Principal) -> Actor:
    return Actor(
        workspace_id=principal.workspace_id,
        actor_id=principal.user_id,
        correlation_id=_request_id(),
    )


def _system_actor(actor_id: str) -> Actor:
    # Install-wide actions belong to no workspace.
    return Actor(workspace_id=None, actor_id=actor_id, correlation_id=_request_id())


def _request_id() -> str | None:
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return request_id if isinstance(request_id, str) else None


def _same_secret(presented: str, expected: str) -> bool:
    # Comparing digests keeps the comparison constant-time whatever the lengths.
    return hmac.compare_digest(
        hashlib.sha256(presented.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )
