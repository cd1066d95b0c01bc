"""Moving every stored secret to the keyring's active entry, while keyvault keeps serving.

Run after the keyring gains a new active version and every keyvault process has it: from
then on new secrets are sealed under it, and a rewrap moves the data keys of the existing
ones. Only the wrapping of each data key changes; ciphertexts stay as they are, so a key
read during a rewrap opens under the old wrapping or the new one, never neither.

Each secret moves in its own short transaction with its row locked, so a rotation or a
disconnect at the same moment waits for it instead of being overwritten, and readers are
never blocked. A secret that does not open is left where it is and reported; the others
still move. Every run ends with one ``keyring.secrets_rewrapped`` event saying how many
moved, which is the audit record that the keyring was rotated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from services.keyvault.cipher import EnvelopeCipher
from services.keyvault.errors import SecretUnreadable
from services.keyvault.repository import ConnectionRepository
from shared.events.schemas import KeyringSecretsRewrapped
from shared.events.store import Actor, EventStore

log = structlog.get_logger(__name__)

Via = Literal["command", "api"]


@dataclass(frozen=True, slots=True)
class RewrapReport:
    """How a rewrap went: where secrets moved to, how many, and which could not be opened."""

    keyring_version: str
    rewrapped: int
    unreadable: tuple[str, ...]
    event_id: str


class Rewrapper:
    """Moves secrets to the active keyring entry and records that it did."""

    def __init__(
        self,
        engine: AsyncEngine,
        store: EventStore,
        repository: ConnectionRepository,
        cipher: EnvelopeCipher,
        events_committed: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._store = store
        self._connections = repository
        self._cipher = cipher
        # Inside keyvault this wakes the relay; the command leaves the event to its poll.
        self._events_committed = events_committed

    async def rewrap(self, actor: Actor, via: Via) -> RewrapReport:
        active = self._cipher.keyring.active_version
        async with self._engine.connect() as conn:
            candidates = await self._connections.wrapped_under_other_than(conn, active)

        moved, unreadable = 0, []
        for connection_id in candidates:
            try:
                moved += await self._rewrap_one(connection_id)
            except SecretUnreadable as error:
                log.error("secret_unreadable", connection_id=connection_id, reason=str(error))
                unreadable.append(connection_id)

        event_id = await self._record(active, moved, unreadable, actor, via)
        log.info(
            "secrets_rewrapped",
            keyring_version=active,
            rewrapped=moved,
            unreadable=len(unreadable),
            via=via,
        )
        return RewrapReport(active, moved, tuple(unreadable), event_id)

    async def _rewrap_one(self, connection_id: str) -> int:
        active = self._cipher.keyring.active_version
        async with self._engine.begin() as conn:
            stored = await self._connections.secret_for_update(conn, connection_id)
            # Moved by a rewrap running beside this one, rotated, or shredded meanwhile.
            if stored is None or stored.sealed.shredded or stored.sealed.keyring_version == active:
                return 0

            rewrapped = self._cipher.rewrap(stored.sealed, stored.owner)
            await self._connections.store_wrapping(conn, connection_id, rewrapped)

        log.debug("secret_rewrapped", connection_id=connection_id, keyring_version=active)
        return 1

    async def _record(
        self, active: str, moved: int, unreadable: list[str], actor: Actor, via: Via
    ) -> str:
        event = KeyringSecretsRewrapped(
            keyring_version=active,
            rewrapped=moved,
            unreadable=len(unreadable),
            unreadable_connection_ids=unreadable,
            via=via,
        )
        async with self._engine.begin() as conn:
            [envelope] = await self._store.append(
                conn, keyring_stream_id(active), [event], actor=actor
            )

        if self._events_committed is not None:
            self._events_committed()

        return envelope.id


def keyring_stream_id(version: str) -> str:
    """The stream of what happened under one keyring version."""
    return f"keyring-{version}"
