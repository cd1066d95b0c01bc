"""A big workspace for the proxy to decide in: thousands of models, members, groups, rules.

The proxy knows only what the stream tells it, so the population is published as the
events the services would have emitted, straight to the stream: far faster than tens
of thousands of admin calls, and the proxy's view cannot tell the difference. The
member who then calls through the proxy is granted the model through one group among
fifty, so each decision walks the group path rather than a workspace-wide rule.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import nats
from nats.js import JetStreamContext

from shared.events import schemas as ev
from shared.events.envelope import Envelope
from tests.stack import Stack


def _id() -> str:
    return str(uuid.uuid4())


async def populate(
    stack: Stack, token: str, connection_id: str, *, models: int, members: int, groups: int
) -> int:
    """Publish the population; return how many events went out."""
    async with httpx.AsyncClient(timeout=30) as client:
        me = (
            await client.get(
                stack.url("access") + "/access/v1/me", headers={"Authorization": f"Bearer {token}"}
            )
        ).json()
    workspace, owner = me["workspace_id"], me["user_id"]
    prefix, stream = stack.env["BYOM_SUBJECT_PREFIX"], stack.env["BYOM_NATS_STREAM"]

    events: list[ev.EventData] = []
    group_ids = [_id() for _ in range(groups)]
    events += [
        ev.GroupCreated(group_id=g, group_name=f"group-{i}") for i, g in enumerate(group_ids)
    ]
    member_ids = [_id() for _ in range(members)]
    for i, user in enumerate(member_ids):
        events.append(ev.MemberAdded(user_id=user, role="member"))
        for k in range(3):
            events.append(
                ev.GroupMemberAdded(group_id=group_ids[(i + k * 7) % groups], user_id=user)
            )
    for g in group_ids[:50]:
        events.append(ev.GroupMemberAdded(group_id=g, user_id=owner))
    model_ids = [_id() for _ in range(models)]
    for i, model in enumerate(model_ids):
        events.append(
            ev.ModelDiscovered(
                model_id=model,
                connection_id=connection_id,
                model_name=f"scale/model-{i}",
                upstream_id="bench-model",
                provider="openai-compatible",
            )
        )
        events.append(ev.ModelEnabled(model_id=model, connection_id=connection_id))
        for k in range(5):
            events.append(
                ev.AccessGranted(
                    rule_id=_id(),
                    model_id=model,
                    principal_kind="group",
                    principal_id=group_ids[(i + k * 11) % groups],
                )
            )
        for k in range(10):
            events.append(
                ev.AccessGranted(
                    rule_id=_id(),
                    model_id=model,
                    principal_kind="user",
                    principal_id=member_ids[(i * 13 + k) % members],
                )
            )
    marker = model_ids[-1]
    events.append(
        ev.AccessGranted(rule_id=_id(), model_id=marker, principal_kind="user", principal_id=owner)
    )

    nc = await nats.connect(stack.env["BYOM_NATS_URL"])
    js = nc.jetstream()
    for data in events:
        envelope = Envelope(
            source="/byom/bench",
            type=data.event_type(),
            subject="bench",
            data=data.model_dump(mode="json"),
            workspaceid=workspace,
            streamid="bench",
            streamversion=1,
        )
        await js.publish(data.subject(prefix), envelope.to_json(), stream=stream)
    # The other services follow these events too (access applies every model event to its
    # tables); a run started while they still work would measure their load, not the proxy.
    await _consumers_caught_up(js, stream)
    await nc.close()

    marker_name = f"scale/model-{models - 1}"
    async with httpx.AsyncClient(timeout=30) as client:
        while True:
            listed = (
                await client.get(
                    stack.openai_base_url + "/models", headers={"Authorization": f"Bearer {token}"}
                )
            ).json()
            if any(m["id"] == marker_name for m in listed.get("data", [])):
                break
            await asyncio.sleep(0.2)
    return len(events)


async def _consumers_caught_up(js: JetStreamContext, stream: str, within: float = 300) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        consumers = await js.consumers_info(stream)
        if all(
            c.num_pending == 0 and c.num_ack_pending == 0
            for c in consumers
            if c.config.durable_name
        ):
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"the services did not catch up with the stream within {within:.0f} s")
