"""Database engines, each service's own schema, and what differs between backends.

On PostgreSQL every service keeps its tables in a schema named after it and never reads
another's. On SQLite (``make run`` on a laptop) every service has a file of its own,
and the schema name is translated away. Tables are created at start-up; the schema is
small and additive so far, and versioned migrations will be needed once a release has
to upgrade a live install.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, Table, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.types import TypeDecorator


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, *, schema: str | None = None, pool_size: int = 10) -> AsyncEngine:
    if not is_sqlite(url):
        return create_async_engine(
            url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
        )

    # SQLite lets one writer in at a time. A single connection per process makes every
    # transaction wait its turn in Python instead of failing with "database is locked".
    engine = create_async_engine(
        url,
        pool_size=1,
        max_overflow=0,
        pool_timeout=60,
        connect_args={"timeout": 30},
        execution_options={"schema_translate_map": {schema: None}} if schema else {},
    )
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


async def create_schema(engine: AsyncEngine, metadata: MetaData) -> None:
    """Create the service's schema and tables if they are missing."""
    async with engine.begin() as conn:
        if metadata.schema and conn.dialect.name == "postgresql":
            # Several replicas may start at once; the advisory lock makes creation serial.
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": metadata.schema}
            )
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{metadata.schema}"'))
        await conn.run_sync(metadata.create_all)


def upsert(conn: AsyncConnection, table: Table) -> Any:
    """An INSERT that understands ON CONFLICT, in the connection's own dialect."""
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)

    return postgresql.insert(table)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC, whatever the backend stores."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None

        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")

        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None

        # SQLite hands back what it stored without the offset; it was stored as UTC.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
