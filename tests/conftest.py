"""Fixtures shared by every tier: a database and a stream of the session's own."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest

from tests.infra import NATS_URL, create_database, drop_database, random_suffix
from tests.stack import Stack, running_stack


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


@dataclass(frozen=True)
class Infra:
    """A database and a stream of one test module's own."""

    database_url: str
    nats_url: str
    stream: str
    prefix: str

    def stack(self, *, log_dir: Path, **options: Any) -> contextlib.AbstractContextManager[Stack]:
        """The gateway's services on this module's database and stream."""
        return running_stack(
            database_url=self.database_url,
            nats_url=self.nats_url,
            stream=self.stream,
            subject_prefix=self.prefix,
            log_dir=log_dir,
            **options,
        )


@pytest.fixture(scope="module")
async def infra(nats_url: str) -> AsyncIterator[Infra]:
    """Each module that starts services gets its own database and stream.

    Two stacks on one database or stream would share durable consumers and tables, and
    take each other's events.
    """
    suffix = random_suffix()
    database = f"byom_test_{suffix}"
    own = Infra(
        create_database(database), nats_url, f"BYOMTEST_{suffix.upper()}", f"byomtest{suffix}"
    )
    yield own
    drop_database(database)
    nc = await nats.connect(nats_url)
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await nc.jetstream().delete_stream(own.stream)
    await nc.close()
