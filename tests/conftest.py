"""Fixtures shared by every tier: a database and a stream of the session's own."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import nats
import pytest

from tests.infra import NATS_URL, create_database, drop_database, random_suffix


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    name = f"byom_test_{random_suffix()}"
    url = create_database(name)
    yield url
    drop_database(name)


@pytest.fixture(scope="session")
def nats_url() -> str:
    return NATS_URL


@pytest.fixture(scope="session")
def stream_names() -> tuple[str, str]:
    """A stream name and subject prefix of this session's own."""
    suffix = random_suffix()
    return f"BYOMTEST_{suffix.upper()}", f"byomtest{suffix}"


@pytest.fixture(scope="session")
async def jetstream_cleanup(nats_url: str, stream_names: tuple[str, str]) -> AsyncIterator[None]:
    yield
    nc = await nats.connect(nats_url)
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await nc.jetstream().delete_stream(stream_names[0])
    await nc.close()
