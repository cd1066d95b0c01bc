"""The proxy's usage queue: every record published once, bounded when NATS is away."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.js.api import DeliverPolicy

from services.proxy.usage import UsageRecorder
from shared.events.envelope import Envelope
from shared.events.schemas import UsageRecorded
from shared.events.stream import ensure_stream
from tests.infra import NatsServer
from tests.support import eventually

pytestmark = pytest.mark.integration

STREAM, PREFIX = "USAGETEST", "usagetest"


def usage() -> UsageRecorded:
    return UsageRecorded(
        request_id=uuid.uuid4().hex,
        user_id="u",
        token_id="t",
        model_id="m",
        model_name="c/m",
        connection_id="c",
        provider="openai-compatible",
        operation="chat",
        streamed=False,
        status=200,
        input_tokens=1,
        output_tokens=2,
        duration_ms=1.0,
    )


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    own = NatsServer(tmp_path / "store")
    own.start()
    yield own
    own.stop()


async def published(url: str) -> list[str]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    info = await js.stream_info(STREAM)
    ids: list[str] = []
    if info.state.messages:
        sub = await js.subscribe(
            f"{PREFIX}.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        while len(ids) < info.state.messages:
            ids.append(Envelope.from_json((await sub.next_msg(timeout=2)).data).data["request_id"])
    await nc.close()
    return ids


async def test_a_burst_is_published_once_each_and_shutdown_flushes(server: NatsServer) -> None:
    """Two thousand records queued at once all reach the stream exactly once by the end of a graceful stop."""
    nc = await nats.connect(server.url)
    await ensure_stream(nc.jetstream(), STREAM, PREFIX)
    recorder = UsageRecorder(nc.jetstream(), stream=STREAM, subject_prefix=PREFIX, capacity=5000)
    recorder.start()
    sent = [usage() for _ in range(2000)]
    for record in sent:
        recorder.record(record, workspace_id="w", actor_id="u")
    await recorder.stop()
    await nc.close()

    ids = await published(server.url)
    assert sorted(ids) == sorted(r.request_id for r in sent)
    assert recorder.dropped == 0


async def test_an_outage_bounds_the_queue_and_the_backlog_goes_out_when_nats_returns(
    server: NatsServer,
) -> None:
    """With NATS gone the queue stops at its bound and counts what it drops; the queued records are published once NATS is back."""
    nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    await ensure_stream(nc.jetstream(), STREAM, PREFIX)
    recorder = UsageRecorder(nc.jetstream(), stream=STREAM, subject_prefix=PREFIX, capacity=50)
    recorder.start()
    server.stop()
    await asyncio.sleep(0.3)

    # Recorded back to back, as calls finishing in one tick would: the queue takes 50.
    for _ in range(80):
        recorder.record(usage(), workspace_id="w", actor_id="u")
    assert recorder.pending == 50
    assert recorder.dropped == 30

    server.start()

    async def drained() -> bool:
        return recorder.pending == 0 and recorder.published > 0

    await eventually(drained, within=30, interval=0.2)
    await recorder.stop()
    await nc.close()
    ids = await published(server.url)
    assert len(ids) == len(set(ids)) == recorder.published
    assert recorder.published == 50


async def test_a_record_that_cannot_be_written_is_dropped_and_the_rest_go_out(
    server: NatsServer,
) -> None:
    """A provider's absurd figure (a token count past 64 bits) costs its own event, not the publisher."""
    nc = await nats.connect(server.url)
    await ensure_stream(nc.jetstream(), STREAM, PREFIX)
    recorder = UsageRecorder(nc.jetstream(), stream=STREAM, subject_prefix=PREFIX, capacity=100)
    recorder.start()
    absurd = usage().model_copy(update={"input_tokens": 2**64})
    before, after = [usage() for _ in range(3)], [usage() for _ in range(3)]
    for record in before:
        recorder.record(record, workspace_id="w", actor_id="u")
    recorder.record(absurd, workspace_id="w", actor_id="u")
    for record in after:
        recorder.record(record, workspace_id="w", actor_id="u")

    async def published_six() -> bool:
        return recorder.published == 6

    await eventually(published_six, within=10)
    # A later batch still goes out: the publisher lived on.
    last = usage()
    recorder.record(last, workspace_id="w", actor_id="u")

    async def published_seven() -> bool:
        return recorder.published == 7

    await eventually(published_seven, within=10)
    await recorder.stop()
    await nc.close()

    ids = await published(server.url)
    assert sorted(ids) == sorted(r.request_id for r in [*before, *after, last])
    assert recorder.dropped == 1
