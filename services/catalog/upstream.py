"""Where a sync gets a connection's models: the key from keyvault, the list from the provider.

Both are network calls, made outside any database transaction. The key lives in a
:class:`ProviderKey` from the moment keyvault's answer is parsed until the adapter puts it
in the provider request, and is dropped when the listing is done. Whatever goes wrong
comes back as a :class:`ListingFailed` with a reason fit to show an admin, never as an
exception: one broken provider must not stall the catalog.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import httpx
import structlog
from pydantic import BaseModel, ValidationError

from services.catalog.domain import (
    Fetched,
    Listing,
    ListingFailed,
    OfferedModel,
    failure_reason,
)
from services.catalog.errors import KeyUnavailable, UnknownProviderKind
from services.catalog.listing import stated_details
from services.catalog.model_data import ModelData
from shared.events.envelope import utcnow
from shared.providers import Endpoint, ProviderError, adapter_for
from shared.providers.registry import default_base_url
from shared.secrets import ProviderKey
from shared.service_auth import ServiceSigner

log = structlog.get_logger(__name__)


class _KeyAnswer(BaseModel):
    connection_id: str
    workspace_id: str
    provider: str
    base_url: str | None = None
    api_key: str


class ConnectionKey:
    """A connection's provider, endpoint and key, as keyvault hands them out."""

    __slots__ = ("connection_id", "endpoint", "key", "workspace_id")

    def __init__(self, answer: _KeyAnswer) -> None:
        self.connection_id = answer.connection_id
        self.workspace_id = answer.workspace_id
        base_url = answer.base_url or default_base_url(answer.provider) or ""
        self.endpoint = Endpoint(kind=answer.provider, base_url=base_url)
        self.key = ProviderKey(answer.api_key)


class KeyvaultKeys:
    """Fetches a connection's key through keyvault's internal route, as the catalog service."""

    def __init__(self, client: httpx.AsyncClient, keyvault_url: str, signer: ServiceSigner) -> None:
        self._client = client
        self._base_url = keyvault_url.rstrip("/")
        self._signer = signer

    async def key_for(self, connection_id: str) -> ConnectionKey:
        response = await self._get(f"/keyvault/internal/v1/connections/{connection_id}/key")
        if response.status_code == 404:
            raise KeyUnavailable("keyvault holds no active key for this connection")

        if response.status_code != 200:
            raise KeyUnavailable(f"keyvault answered {response.status_code} to the key request")

        try:
            answer = _KeyAnswer.model_validate_json(response.content)
        except ValidationError:
            # The error would quote the body, and the body holds the key.
            raise KeyUnavailable("keyvault's answer to the key request is unreadable") from None

        return ConnectionKey(answer)

    async def _get(self, path: str) -> httpx.Response:
        url = self._base_url + path
        credential = self._signer.mint("catalog", "keyvault")
        started = time.perf_counter()
        try:
            response = await self._client.get(
                url, headers={"Authorization": f"Bearer {credential}"}
            )
        except httpx.HTTPError as error:
            _log_call(url, started, error=type(error).__name__)
            raise KeyUnavailable(f"keyvault is unreachable ({type(error).__name__})") from None

        _log_call(url, started, status=response.status_code)
        return response


class ModelSource:
    """Lists a connection's models with the key keyvault gives for it, and describes them."""

    def __init__(
        self, keys: KeyvaultKeys, provider_client: httpx.AsyncClient, model_data: ModelData
    ) -> None:
        self._keys = keys
        self._client = provider_client
        self._model_data = model_data

    async def fetch(self, connection_id: str, workspace_id: str) -> Fetched:
        started_at = utcnow()
        try:
            models = await self._list(connection_id, workspace_id)
        except (KeyUnavailable, UnknownProviderKind) as error:
            return ListingFailed(started_at, failure_reason(str(error)))
        except ProviderError as error:
            # Adapters scrub what providers say before it reaches the message.
            return ListingFailed(started_at, failure_reason(error.message))
        except Exception:
            # A bug here must not stall the event consumer on one connection forever: the
            # failure is logged in full and recorded on the connection, and the admin can
            # sync again once it is fixed.
            log.exception("model_listing_crashed", connection_id=connection_id)
            return ListingFailed(started_at, "the catalog failed to list models; see its logs")

        return Listing(started_at, models)

    async def _list(self, connection_id: str, workspace_id: str) -> tuple[OfferedModel, ...]:
        connection = await self._keys.key_for(connection_id)
        if connection.workspace_id != workspace_id:
            raise KeyUnavailable("keyvault's key belongs to another workspace")

        try:
            adapter = adapter_for(connection.endpoint.kind)
        except LookupError:
            raise UnknownProviderKind(connection.endpoint.kind) from None

        kind = connection.endpoint.kind
        listed = await adapter.list_models(self._client, connection.endpoint, connection.key)
        return tuple(
            OfferedModel(
                m.id, m.owned_by, self._model_data.describe(kind, m.id, stated_details(kind, m.raw))
            )
            for m in listed
        )


def _log_call(
    url: str, started: float, *, status: int | None = None, error: str | None = None
) -> None:
    log.info(
        "keyvault_call",
        method="GET",
        host=urlsplit(url).hostname,
        status=status,
        error=error,
        latency_ms=round((time.perf_counter() - started) * 1000, 1),
    )
