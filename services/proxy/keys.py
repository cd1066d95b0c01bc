"""Provider keys, fetched from keyvault once and kept only in this process's memory.

A key is fetched on the first call that needs it, with a service credential, and kept
until a ``provider.key_rotated`` or ``provider.disconnected`` event evicts it. Calls
that arrive together for a connection whose key is not yet here share one fetch.

The key comes with the provider kind and base URL keyvault stored beside it, and the
proxy sends the key only there. The connection events on the stream say where a
connection points too, but a key must never follow an address that keyvault itself did
not record with it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx
import structlog

from shared.providers import Endpoint
from shared.secrets import ProviderKey
from shared.service_auth import ServiceSigner

log = structlog.get_logger(__name__)


class KeyUnavailable(Exception):
    """keyvault did not hand over the key: the connection is gone or keyvault is down."""


@dataclass(frozen=True, slots=True)
class Credential:
    """A provider key and the one endpoint it may be sent to."""

    key: ProviderKey
    endpoint: Endpoint


class KeyCache:
    def __init__(self, client: httpx.AsyncClient, keyvault_url: str, signer: ServiceSigner) -> None:
        self._client = client
        self._base = keyvault_url.rstrip("/") + "/keyvault/internal/v1/connections/"
        self._signer = signer
        self._keys: dict[str, Credential] = {}
        self._pending: dict[str, asyncio.Future[Credential]] = {}

    def cached(self, connection_id: str) -> Credential | None:
        return self._keys.get(connection_id)

    async def get(self, connection_id: str) -> Credential:
        key = self._keys.get(connection_id)
        if key is not None:
            return key

        pending = self._pending.get(connection_id)
        if pending is not None:
            return await asyncio.shield(pending)

        future: asyncio.Future[Credential] = asyncio.get_running_loop().create_future()
        self._pending[connection_id] = future
        try:
            key = await self._fetch(connection_id)
        except BaseException as error:
            future.set_exception(error)
            # The waiters, if any, see the error; nobody else needs to retrieve it.
            future.exception()
            raise
        else:
            self._keys[connection_id] = key
            future.set_result(key)
            return key
        finally:
            del self._pending[connection_id]

    def evict(self, connection_id: str) -> None:
        if self._keys.pop(connection_id, None) is not None:
            log.info("provider_key_evicted", connection_id=connection_id)

    async def _fetch(self, connection_id: str) -> Credential:
        credential = self._signer.mint("proxy", "keyvault")
        try:
            response = await self._client.get(
                self._base + connection_id + "/key",
                headers={"Authorization": f"Bearer {credential}"},
            )
        except httpx.HTTPError as error:
            # The httpx error is not chained: its request carries our service credential.
            raise KeyUnavailable(f"keyvault is unreachable ({type(error).__name__})") from None

        if response.status_code != 200:
            raise KeyUnavailable(f"keyvault answered {response.status_code}")

        log.info("provider_key_fetched", connection_id=connection_id)
        released = response.json()
        return Credential(
            ProviderKey(released["api_key"]),
            Endpoint(str(released["provider"]), str(released["base_url"])),
        )
