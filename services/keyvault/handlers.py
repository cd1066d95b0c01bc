"""keyvault's commands and queries: load, decide, save, then tell the relay.

Every change of a connection and the event that records it commit in one transaction.
A key is checked with its provider before anything is stored; the check happens outside
any transaction, so a slow provider holds no lock, and the save that follows uses the
stream version loaded before the check, so a concurrent change makes it fail, not win.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import structlog
from opentelemetry import metrics
from sqlalchemy.exc import IntegrityError

from services.keyvault.cipher import EnvelopeCipher, SecretOwner
from services.keyvault.destinations import DestinationPolicy
from services.keyvault.domain import (
    Connect,
    Connection,
    Disconnect,
    KeyRelease,
    RotateKey,
    VerificationFailed,
    check_name,
    check_provider,
    require_key,
    resolve_base_url,
    stream_id,
)
from services.keyvault.errors import (
    ConnectionDisconnected,
    ConnectionNameTaken,
    ConnectionNotFound,
)
from services.keyvault.repository import NAME_INDEX, ConnectionRepository
from shared.events.schemas import (
    ProviderConnected,
    ProviderDisconnected,
    ProviderKeyRotated,
    ProviderVerificationFailed,
)
from shared.events.store import Actor
from shared.providers import (
    Endpoint,
    KeyRejected,
    ProviderError,
    ProviderUnavailable,
    adapter_for,
    known_kinds,
)
from shared.providers.registry import default_base_url
from shared.runtime import Runtime
from shared.secrets import ProviderKey

log = structlog.get_logger(__name__)


class Handlers:
    """What keyvault can be asked to do, wired to its database, cipher and providers."""

    def __init__(
        self,
        runtime: Runtime,
        repository: ConnectionRepository,
        cipher: EnvelopeCipher,
        provider_client: httpx.AsyncClient,
        destinations: DestinationPolicy,
    ) -> None:
        self._runtime = runtime
        self._destinations = destinations
        self._engine = runtime.engine
        self._store = runtime.store
        self._connections = repository
        self._cipher = cipher
        self._provider_client = provider_client
        self._key_reads = metrics.get_meter("byom.keyvault").create_counter(
            "byom.keyvault.key_reads",
            unit="{read}",
            description="Provider keys handed to gateway services, by reading service.",
        )

    async def connect(self, command: Connect, actor: Actor) -> Connection | VerificationFailed:
        provider = check_provider(command.provider, known_kinds())
        name = check_name(command.name)
        require_key(provider, command.api_key)
        base_url = resolve_base_url(provider, command.base_url, default_base_url(provider))
        await self._destinations.check(base_url)
        await self._require_free_name(command.workspace_id, name)
        connection_id = str(uuid.uuid4())

        failed = await self._verify(provider, base_url, command.api_key)
        if failed is not None:
            await self._record_failure(connection_id, provider, name, failed, actor)
            return failed

        connection = self._new_connection(command, connection_id, provider, name, base_url, actor)
        await self._save_new(connection, command.api_key, actor)
        self._runtime.events_committed()
        return connection

    async def rotate_key(self, command: RotateKey, actor: Actor) -> Connection | VerificationFailed:
        connection, version = await self._load_active(command.workspace_id, command.connection_id)
        require_key(connection.provider, command.api_key)

        failed = await self._verify(connection.provider, connection.base_url, command.api_key)
        if failed is not None:
            await self._record_failure(
                connection.id, connection.provider, connection.name, failed, actor
            )
            return failed

        now = datetime.now(UTC)
        rotated = replace(
            connection,
            masked_key=command.api_key.masked,
            fingerprint=self._fingerprint(command.api_key),
            secret_version=connection.secret_version + 1,
            key_rotated_at=now,
        )
        sealed = self._cipher.seal(command.api_key, self._owner(rotated))
        event = ProviderKeyRotated(
            connection_id=connection.id,
            masked_key=rotated.masked_key,
            fingerprint=rotated.fingerprint,
        )
        async with self._engine.begin() as conn:
            await self._store.append(
                conn, connection.stream_id, [event], actor=actor, expected_version=version
            )
            await self._connections.replace_secret(conn, rotated, sealed, now)

        self._runtime.events_committed()
        return rotated

    async def disconnect(self, command: Disconnect, actor: Actor) -> None:
        """Disconnect and shred the key; disconnecting twice changes nothing the second time."""
        connection, version = await self._load(command.workspace_id, command.connection_id)
        if not connection.is_active:
            return

        event = ProviderDisconnected(connection_id=connection.id)
        async with self._engine.begin() as conn:
            await self._store.append(
                conn, connection.stream_id, [event], actor=actor, expected_version=version
            )
            await self._connections.disconnect(
                conn, connection.id, actor.actor_id or "", datetime.now(UTC)
            )

        self._runtime.events_committed()

    async def release_key(self, connection_id: str, reader: str) -> KeyRelease:
        """The plain key of an active connection, for the gateway service ``reader``.

        Each read is counted, per connection, key version and reader, in the database and
        as a metric, rather than logged: admins see who used which key and how often.
        """
        async with self._engine.begin() as conn:
            stored = await self._connections.read_secret(
                conn, connection_id, reader, datetime.now(UTC)
            )

        if stored is None:
            raise ConnectionNotFound(f"no active connection {connection_id}")

        api_key = self._cipher.open(stored.sealed, stored.owner)
        self._key_reads.add(1, {"byom.key_reader": reader})
        return KeyRelease(
            connection_id=connection_id,
            workspace_id=stored.owner.workspace_id,
            provider=stored.provider,
            base_url=stored.base_url,
            api_key=api_key,
        )

    async def connections(self, workspace_id: str) -> list[Connection]:
        async with self._engine.connect() as conn:
            return await self._connections.in_workspace(conn, workspace_id)

    async def connection(self, workspace_id: str, connection_id: str) -> Connection:
        connection, _ = await self._load(workspace_id, connection_id)
        return connection

    async def _save_new(self, connection: Connection, key: ProviderKey, actor: Actor) -> None:
        sealed = self._cipher.seal(key, self._owner(connection))
        event = ProviderConnected(
            connection_id=connection.id,
            provider=connection.provider,
            connection_name=connection.name,
            base_url=connection.base_url,
            masked_key=connection.masked_key,
            fingerprint=connection.fingerprint,
            scope="install" if connection.is_install else "workspace",
        )
        try:
            async with self._engine.begin() as conn:
                await self._connections.add(conn, connection, sealed)
                await self._store.append(
                    conn, connection.stream_id, [event], actor=actor, expected_version=0
                )
        except IntegrityError as error:
            # Two admins connecting one name at the same moment: the unique index settles it.
            if NAME_INDEX in str(error.orig):
                raise ConnectionNameTaken(
                    f"an active connection is already named {connection.name!r}"
                ) from None

            raise

    async def _require_free_name(self, workspace_id: str, name: str) -> None:
        # Checked before the provider is called too, so a taken name costs no key check.
        async with self._engine.connect() as conn:
            if await self._connections.name_in_use(conn, workspace_id, name):
                raise ConnectionNameTaken(f"an active connection is already named {name!r}")

    async def _load(self, workspace_id: str, connection_id: str) -> tuple[Connection, int]:
        async with self._engine.connect() as conn:
            connection = await self._connections.get(conn, workspace_id, connection_id)
            if connection is None:
                raise ConnectionNotFound(f"no connection {connection_id} in this workspace")

            return connection, await self._store.version(conn, connection.stream_id)

    async def _load_active(self, workspace_id: str, connection_id: str) -> tuple[Connection, int]:
        connection, version = await self._load(workspace_id, connection_id)
        if not connection.is_active:
            raise ConnectionDisconnected(
                f"connection {connection_id} is disconnected; connect the provider again"
            )

        return connection, version

    async def _verify(
        self, provider: str, base_url: str, key: ProviderKey
    ) -> VerificationFailed | None:
        endpoint = Endpoint(kind=provider, base_url=base_url)
        try:
            await adapter_for(provider).verify_key(self._provider_client, endpoint, key)
        except KeyRejected as error:
            return VerificationFailed("rejected", _without_key(error.message, key))
        except ProviderUnavailable as error:
            return VerificationFailed("unavailable", _without_key(error.message, key))
        except ProviderError as error:
            return VerificationFailed("unexpected", _without_key(error.message, key))

        return None

    async def _record_failure(
        self,
        connection_id: str,
        provider: str,
        name: str,
        failed: VerificationFailed,
        actor: Actor,
    ) -> None:
        # Only a refusal is a verdict on the key worth auditing; an outage says nothing of it.
        if failed.outcome != "rejected":
            return

        event = ProviderVerificationFailed(
            connection_id=connection_id,
            provider=provider,
            connection_name=name,
            reason=failed.message,
        )
        async with self._engine.begin() as conn:
            await self._store.append(conn, stream_id(connection_id), [event], actor=actor)

        self._runtime.events_committed()

    def _new_connection(
        self,
        command: Connect,
        connection_id: str,
        provider: str,
        name: str,
        base_url: str,
        actor: Actor,
    ) -> Connection:
        return Connection(
            id=connection_id,
            workspace_id=command.workspace_id,
            provider=provider,
            name=name,
            base_url=base_url,
            status="active",
            masked_key=command.api_key.masked,
            fingerprint=self._fingerprint(command.api_key),
            secret_version=1,
            connected_at=datetime.now(UTC),
            connected_by=actor.actor_id or "",
            key_rotated_at=None,
            disconnected_at=None,
            read_count=0,
            last_read_at=None,
        )

    def _fingerprint(self, key: ProviderKey) -> str:
        # No key, nothing to recognise: an empty fingerprint says the connection has none.
        return self._cipher.keyring.fingerprint(key) if key else ""

    @staticmethod
    def _owner(connection: Connection) -> SecretOwner:
        return SecretOwner(connection.workspace_id, connection.id, connection.secret_version)


def _without_key(message: str, key: ProviderKey) -> str:
    # The adapter already scrubs what providers say; this guard holds even if one forgets.
    return message.replace(key.reveal(), "[redacted]") if key else message
