"""The event log's promises, on real PostgreSQL and NATS JetStream.

Appends are ordered and conflict per stream; the relay publishes everything in append
order, once, even when it crashes between publishing and saving its position; a consumer
that crashes between its commit and its ack applies nothing twice.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats
import pytest
from faststream.nats import NatsBroker
from nats.js.api import ConsumerConfig, DeliverPolicy
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from shared.db import create_engine, create_schema
from shared.events.consumer import Projection, subscribe_projection
from shared.events.envelope import Envelope
from shared.events.relay import Relay
from shared.events.schemas import GroupCreated
from shared.events.store import Actor, ConcurrencyConflict, EventStore, define_event_tables
from shared.events.stream import ensure_stream
from tests.infra import random_suffix

pytestmark = pytest.mark.integration

ACTOR = Actor(workspace_id="ws-test", actor_id="tester")


@dataclass
class Log:
    engine: object
    tables: object
    store: EventStore
    counter: Table
    js: object
    stream: str
    prefix: str


@pytest.fixture
async def log(
    database_url: str, nats_url: str, stream_names: tuple[str, str], jetstream_cleanup: None
) -> AsyncIterator[Log]:
    metadata = MetaData(schema=f"evtest_{random_suffix()}")
    tables = define_event_tables(metadata)
    counter = Table(
        "applied",
        metadata,
        Column("group_id", String(64), primary_key=True),
        Column("times", Integer, nullable=False),
    )
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    await create_schema(engine, metadata)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    stream, prefix = stream_names
    await ensure_stream(js, stream, prefix)
    store = EventStore(tables, service="evtest", subject_prefix=prefix)
    yield Log(engine, tables, store, counter, js, stream, prefix)
    await nc.close()
    await engine.dispose()


def group_event(name: str) -> GroupCreated:
    return GroupCreated(group_id=name, group_name=name)


async def append(log: Log, stream_id: str, count: int, hold_seconds: float = 0.0) -> None:
    async with log.engine.begin() as conn:
        await log.store.append(
            conn, stream_id, [group_event(f"{stream_id}-{i}") for i in range(count)], actor=ACTOR
        )
        # Holding the transaction open after the append is what exposes out-of-order
        # commits, if appends were not serialised.
        await asyncio.sleep(hold_seconds)


async def published_ids(log: Log, subject: str) -> list[str]:
    """Every event id in the stream on this subject, in stream order."""
    sub = await log.js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    info = await log.js.stream_info(log.stream)
    ids: list[str] = []
    try:
        while True:
            msg = await sub.next_msg(timeout=1.0)
            ids.append(Envelope.from_json(msg.data).id)
            if msg.metadata.sequence.stream >= info.state.last_seq:
                break
    except nats.errors.TimeoutError:
        pass
    await sub.unsubscribe()
    return ids


async def stored_ids(log: Log, stream_prefix: str) -> list[str]:
    events = log.tables.events
    async with log.engine.connect() as conn:
        rows = await conn.execute(
            select(events.c.id)
            .where(events.c.stream_id.startswith(stream_prefix))
            .order_by(events.c.position)
        )
        return [r.id for r in rows]


def relay_for(log: Log, name: str) -> Relay:
    return Relay(log.engine, log.tables, log.js, stream=log.stream, name=name, poll_seconds=0.05)


async def test_concurrent_writers_lose_nothing_and_keep_order(log: Log) -> None:
    """Slow and fast transactions appending at once: the relay publishes every event once, in append order."""
    run = random_suffix()
    relay = relay_for(log, f"relay-{run}")
    relay_task = asyncio.create_task(relay.run())

    writers = [
        append(log, f"{run}-s{i}", count=3, hold_seconds=random.uniform(0, 0.05)) for i in range(40)
    ]
    await asyncio.gather(*writers)
    await asyncio.sleep(0.3)
    relay_task.cancel()

    expected = await stored_ids(log, f"{run}-")
    published = [i for i in await published_ids(log, f"{log.prefix}.>") if i in set(expected)]
    assert len(expected) == 120
    assert published == expected


async def test_second_writer_of_a_stream_conflicts(log: Log) -> None:
    """Two writers that loaded the same version of one stream: the second is refused."""
    stream_id = f"conflict-{random_suffix()}"
    await append(log, stream_id, count=1)

    async with log.engine.begin() as conn:
        await log.store.append(conn, stream_id, [group_event("a")], actor=ACTOR, expected_version=1)
    with pytest.raises(ConcurrencyConflict):
        async with log.engine.begin() as conn:
            await log.store.append(
                conn, stream_id, [group_event("b")], actor=ACTOR, expected_version=1
            )


async def test_relay_crash_after_publish_before_saving_position(log: Log) -> None:
    """Events committed while no relay runs go out later; a replay after a crash adds no duplicates."""
    run = random_suffix()
    name = f"relay-{run}"
    for i in range(5):
        await append(log, f"{run}-s{i}", count=2)

    # Committed, not yet published: the relay is down. Then it comes up.
    assert await relay_for(log, name).publish_pending() >= 10
    expected = await stored_ids(log, f"{run}-")
    info_before = await log.js.stream_info(log.stream)

    # The state a crash leaves behind after publishing and before saving the position.
    offsets = log.tables.relay_offsets
    async with log.engine.begin() as conn:
        await conn.execute(
            update(offsets).where(offsets.c.relay == name).values(position=offsets.c.position - 10)
        )
    assert await relay_for(log, name).publish_pending() == 10

    info_after = await log.js.stream_info(log.stream)
    assert info_after.state.messages == info_before.state.messages
    published = [i for i in await published_ids(log, f"{log.prefix}.>") if i in set(expected)]
    assert published == expected


async def test_consumer_crash_between_commit_and_ack_applies_once(log: Log, nats_url: str) -> None:
    """A consumer that committed but died before acking gets the event again and skips it."""
    run = random_suffix()
    await append(log, f"{run}-only", count=1)
    await relay_for(log, f"relay-{run}").publish_pending()
    projection = Projection(log.engine, log.tables, name=f"consumer-{run}")
    subject = f"{log.prefix}.access.group.created"

    async def count(conn: object, envelope: Envelope) -> None:
        statement = pg_insert(log.counter).values(group_id=envelope.data["group_id"], times=1)
        statement = statement.on_conflict_do_update(
            index_elements=[log.counter.c.group_id], set_={"times": log.counter.c.times + 1}
        )
        await conn.execute(statement)

    # First life: pull the event, apply it, commit, and die without acking.
    durable = projection.name
    await log.js.add_consumer(
        log.stream,
        ConsumerConfig(
            durable_name=durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=1.0,
            max_ack_pending=1,
            filter_subject=subject,
        ),
    )
    first = await log.js.pull_subscribe(subject, durable=durable, stream=log.stream)
    target = None
    while target is None:
        (msg,) = await first.fetch(1, timeout=5)
        envelope = Envelope.from_json(msg.data)
        if envelope.streamid == f"{run}-only":
            target = envelope
            assert await projection.apply_once(envelope, count)
        else:
            await msg.ack()
    await first.unsubscribe()

    # Second life: the real subscriber gets the redelivery and must not apply it again.
    handled = asyncio.Event()

    async def handle(envelope: Envelope) -> None:
        await projection.apply_once(envelope, count)
        if envelope.id == target.id:
            handled.set()

    broker = NatsBroker(nats_url)
    subscribe_projection(
        broker, projection, stream=log.stream, subject=subject, handle=handle, ack_wait_seconds=1.0
    )
    await broker.start()
    try:
        await asyncio.wait_for(handled.wait(), timeout=10)
    finally:
        await broker.stop()

    async with log.engine.connect() as conn:
        times = (
            await conn.execute(
                select(func.sum(log.counter.c.times)).where(
                    log.counter.c.group_id == target.data["group_id"]
                )
            )
        ).scalar_one()
    assert times == 1
