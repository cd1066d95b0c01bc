"""Killed processes lose no event and apply none twice.

Each test kills a service with SIGKILL (no graceful shutdown, nothing flushed) at a
point where work is committed but possibly not yet published or acknowledged, starts
it again, and counts what reached the stream and the projections.
"""

from __future__ import annotations

from collections import Counter

import nats
import pytest
from nats.js.api import DeliverPolicy

from shared.events.envelope import Envelope
from tests.e2e.flows import connect_provider, discovered_models, provider_key
from tests.emulator import EmulatorState
from tests.stack import Stack
from tests.support import Workspace, eventually, unique

pytestmark = pytest.mark.e2e


async def stream_events(stack: Stack, subject: str, workspace_id: str) -> list[Envelope]:
    """Every event on ``subject`` for one workspace, as the stream holds them now."""
    nc = await nats.connect(stack.env["BYOM_NATS_URL"])
    found: list[Envelope] = []
    try:
        js = nc.jetstream()
        info = await js.stream_info(stack.env["BYOM_NATS_STREAM"])
        sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
        try:
            while True:
                msg = await sub.next_msg(timeout=1.0)
                envelope = Envelope.from_json(msg.data)
                if envelope.workspaceid == workspace_id:
                    found.append(envelope)
                if msg.metadata.sequence.stream >= info.state.last_seq:
                    break
        except nats.errors.TimeoutError:
            pass
    finally:
        await nc.close()
    return found


async def test_producer_killed_after_commit_publishes_everything_once_on_restart(
    stack: Stack, workspace: Workspace
) -> None:
    """Groups created just before access is killed all reach the stream, each exactly once, after a restart."""
    prefix = stack.env["BYOM_SUBJECT_PREFIX"]
    created = [
        (await workspace.ok("POST", "/access/v1/groups", json={"name": unique("team")}))["id"]
        for _ in range(15)
    ]
    stack.stop("access", kill=True)
    stack.start("access")

    async def all_published() -> list[Envelope] | None:
        events = await stream_events(stack, f"{prefix}.access.group.created", workspace.id)
        return events if len(events) >= len(created) else None

    events = await eventually(all_published, within=15)
    ids = Counter(e.data["group_id"] for e in events)
    assert set(ids) == set(created)
    assert max(ids.values()) == 1
    groups = await workspace.ok("GET", "/access/v1/groups")
    assert sorted(g["id"] for g in groups["data"]) == sorted(created)


async def test_consumer_killed_and_restarted_applies_what_it_missed_once(
    stack: Stack, workspace: Workspace, emulator: tuple[EmulatorState, str]
) -> None:
    """A provider connected while catalog is dead is synced once when catalog returns, with no model twice."""
    prefix = stack.env["BYOM_SUBJECT_PREFIX"]
    stack.stop("catalog", kill=True)
    try:
        connection = await connect_provider(workspace, emulator, provider_key())
    finally:
        stack.start("catalog")

    models = await discovered_models(workspace, connection["id"], count=len(emulator[0].models))
    # Kill it again right after it has worked, and bring it back: redeliveries change nothing.
    stack.stop("catalog", kill=True)
    stack.start("catalog")
    again = await discovered_models(workspace, connection["id"], count=len(emulator[0].models))

    assert sorted(m["id"] for m in again) == sorted(m["id"] for m in models)
    discovered = await stream_events(stack, f"{prefix}.catalog.model.discovered", workspace.id)
    per_upstream = Counter(
        e.data["upstream_id"] for e in discovered if e.data["connection_id"] == connection["id"]
    )
    assert per_upstream == Counter(emulator[0].models)
