"""Move every stored provider key to the keyring's active entry.

``python -m services.keyvault rewrap`` (or ``python -m services.keyvault.rewrap``), with
the same settings keyvault runs with. Run it after adding a new active version to the
keyring and rolling it out to every keyvault process; keyvault keeps serving meanwhile.
Once it reports that nothing is left under an older version, that version may be removed
from the keyring. Disconnected connections have no data key left and are skipped. A
secret that does not open is logged and left alone, and the command exits with status 1.

The run is recorded as a ``keyring.secrets_rewrapped`` event in keyvault's event log; the
running keyvault's relay publishes it.
"""

from __future__ import annotations

import asyncio
import sys

from services.keyvault.cipher import EnvelopeCipher
from services.keyvault.repository import ConnectionRepository
from services.keyvault.rewrapping import Rewrapper, RewrapReport
from services.keyvault.settings import Settings
from services.keyvault.tables import define_tables
from shared.db import create_engine, create_schema
from shared.events.store import Actor, EventStore, define_event_tables
from shared.logging import configure_logging


async def rewrap() -> RewrapReport:
    settings = Settings()
    keyring = settings.load_keyring()
    configure_logging("keyvault", settings.log_level, settings.log_json)
    tables = define_tables()
    store = EventStore(
        define_event_tables(tables.metadata),
        service="keyvault",
        subject_prefix=settings.subject_prefix,
    )
    engine = create_engine(settings.database_url, schema="keyvault", pool_size=1)
    try:
        await create_schema(engine, tables.metadata)
        rewrapper = Rewrapper(engine, store, ConnectionRepository(tables), EnvelopeCipher(keyring))
        # Whoever runs the command holds the keyring and the database: the install itself.
        return await rewrapper.rewrap(Actor(workspace_id=None, actor_id=None), via="command")
    finally:
        await engine.dispose()


def main() -> None:
    # A secret left unreadable is an incident for a person to look at: fail the command.
    sys.exit(1 if asyncio.run(rewrap()).unreadable else 0)


if __name__ == "__main__":
    main()
