"""Database engines and each service's own schema.

Every service keeps its tables in a PostgreSQL schema named after it and never reads
another's. Tables are created at start-up; the schema is small and additive so far,
and versioned migrations will be needed once a release has to upgrade a live install.
"""

from __future__ import annotations

from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


async def create_schema(engine: AsyncEngine, metadata: MetaData) -> None:
    """Create the service's schema and tables if they are missing."""
    async with engine.begin() as conn:
        if metadata.schema:
            # Several replicas may start at once; the advisory lock makes creation serial.
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": metadata.schema}
            )
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{metadata.schema}"'))
        await conn.run_sync(metadata.create_all)
