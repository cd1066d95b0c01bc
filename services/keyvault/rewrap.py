"""Move every stored provider key to the keyring's active entry: ``python -m services.keyvault.rewrap``.

Run it after adding a new active version to the keyring and rolling it out to keyvault;
once it reports that nothing is left under an older version, that version may be removed
from the keyring. Ciphertexts do not change, only the wrapping of their data keys; disconnected
connections have no data key left and are skipped. A secret that does not open is logged
and left alone, and the command exits with status 1.
"""

from __future__ import annotations

import asyncio
import sys

import structlog

from services.keyvault.cipher import EnvelopeCipher
from services.keyvault.handlers import RewrapReport, rewrap_secrets
from services.keyvault.repository import ConnectionRepository
from services.keyvault.settings import Settings
from services.keyvault.tables import define_tables
from shared.db import create_engine
from shared.logging import configure_logging

log = structlog.get_logger(__name__)


async def rewrap() -> RewrapReport:
    settings = Settings()
    keyring = settings.load_keyring()
    configure_logging("keyvault", settings.log_level, settings.log_json)
    engine = create_engine(settings.database_url, schema="keyvault", pool_size=1)
    try:
        report = await rewrap_secrets(
            engine, ConnectionRepository(define_tables()), EnvelopeCipher(keyring)
        )
    finally:
        await engine.dispose()

    log.info(
        "secrets_rewrapped",
        moved=report.moved,
        unreadable=len(report.unreadable),
        keyring_version=keyring.active_version,
    )
    return report


if __name__ == "__main__":
    # A secret left unreadable is an incident for a person to look at: fail the command.
    sys.exit(1 if asyncio.run(rewrap()).unreadable else 0)
