"""The first complete path, through every core service, with the official OpenAI SDK.

An admin creates people and a group, connects a provider, enables one of its models and
grants it to the group; a member of the group calls it, plain and streamed, and others
are refused in OpenAI's dialect; revoking the grant stops the next call.
"""

from __future__ import annotations

import secrets
import time

import nats
import openai
import pytest
from nats.js.api import DeliverPolicy

from shared.events.envelope import Envelope
from tests.e2e.conftest import OpenAIFor
from tests.e2e.flows import (
    connect_provider,
    discovered_models,
    grant_when_known,
    listed,
    provider_key,
    visible_models,
)
from tests.emulator import EmulatorState
from tests.stack import Stack
from tests.support import Workspace, eventually, unique

pytestmark = pytest.mark.e2e


async def test_connect_sync_grant_call_revoke(
    openai_for: OpenAIFor, stack: Stack, workspace: Workspace, emulator: tuple[EmulatorState, str]
) -> None:
    """A group member calls a granted model plain and streamed; outsiders are refused; revoking stops the next call."""
    state, _ = emulator
    ws = workspace
    alice = await ws.member("alice")
    bob = await ws.member("bob")
    group = await ws.ok("POST", "/access/v1/groups", json={"name": unique("Engineering")})
    await ws.ok("PUT", f"/access/v1/groups/{group['id']}/members/{alice['id']}")

    key = provider_key()
    connection = await connect_provider(ws, emulator, key)
    assert connection["masked_key"] == f"{key[:3]}…{key[-4:]}"
    assert key not in str(connection)

    models = await discovered_models(ws, connection["id"], count=5)
    assert len(models) == 5
    assert all(not m["enabled"] for m in models)
    chosen = next(m for m in models if m["upstream_id"] == "gpt-beta")
    assert chosen["name"] == f"{connection['name']}/gpt-beta"
    await ws.ok("POST", f"/catalog/v1/models/{chosen['id']}/enable")
    rule = await grant_when_known(
        ws, chosen["id"], {"principal_kind": "group", "principal_id": group["id"]}
    )

    alice_token = await ws.token_for(alice["id"])
    bob_token = await ws.token_for(bob["id"])
    await eventually(lambda: listed(stack, alice_token, chosen["name"]), within=20)

    # Plain call: the provider's answer and usage come back; the right key reached the provider.
    state.requests.clear()
    alice_sdk = openai_for(alice_token)
    answer = await alice_sdk.chat.completions.create(
        model=chosen["name"], messages=[{"role": "user", "content": "Say hello"}]
    )
    assert answer.choices[0].message.content
    assert "gpt-beta" in answer.choices[0].message.content
    assert answer.usage is not None and answer.usage.total_tokens > 0
    upstream = state.requests_to("/chat/completions")[-1]
    assert upstream.bearer == key
    assert upstream.json["model"] == "gpt-beta"

    # Streamed call, with the final usage chunk the client asked for.
    stream = await alice_sdk.chat.completions.create(
        model=chosen["name"],
        messages=[{"role": "user", "content": "Stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage is not None:
            usage = chunk.usage
    assert "gpt-beta" in text
    assert usage is not None and usage.completion_tokens > 0

    # /v1/models lists exactly what each member may use.
    assert await visible_models(stack, alice_token) == [chosen["name"]]
    assert await visible_models(stack, bob_token) == []

    # Outside the group: 403 in OpenAI's error shape.
    with pytest.raises(openai.PermissionDeniedError) as denied:
        await openai_for(bob_token).chat.completions.create(
            model=chosen["name"], messages=[{"role": "user", "content": "hi"}]
        )
    assert denied.value.status_code == 403
    assert denied.value.body["code"] == "model_not_permitted"  # type: ignore[index]

    # A bad token: 401.
    with pytest.raises(openai.AuthenticationError):
        await openai_for("byom_" + secrets.token_urlsafe(32)).chat.completions.create(
            model=chosen["name"], messages=[{"role": "user", "content": "hi"}]
        )

    # A disabled model and an unknown one: 404, even for a member with a grant to it.
    disabled = next(m for m in models if m["upstream_id"] == "gpt-gamma")
    await grant_when_known(
        ws, disabled["id"], {"principal_kind": "user", "principal_id": alice["id"]}
    )
    for name in (disabled["name"], f"{connection['name']}/no-such-model"):
        with pytest.raises(openai.NotFoundError):
            await alice_sdk.chat.completions.create(
                model=name, messages=[{"role": "user", "content": "hi"}]
            )

    # Revoking the grant makes the next call fail.
    revoked_at = time.monotonic()
    await ws.ok("DELETE", f"/access/v1/models/{chosen['id']}/rules/{rule['id']}")

    async def refused() -> bool:
        try:
            await alice_sdk.chat.completions.create(
                model=chosen["name"], messages=[{"role": "user", "content": "hi"}]
            )
        except openai.PermissionDeniedError:
            return True
        return False

    await eventually(refused, within=5, interval=0.01)
    assert time.monotonic() - revoked_at < 5

    # Every call was recorded as a usage event.
    usage_events = await _usage_events(stack, ws.id, expected=2)
    assert {e.data["user_id"] for e in usage_events} == {alice["id"]}
    assert any(e.data["streamed"] and e.data["output_tokens"] > 0 for e in usage_events)

    # Neither the provider key nor a gateway token appears in any service's logs.
    logs = stack.logs()
    assert logs
    for secret in (key, alice_token, bob_token, ws.admin_token):
        assert not any(secret[i : i + 12] in logs for i in range(len(secret) - 12)), "leaked"


async def test_wrong_provider_key_is_refused_and_nothing_is_stored(
    workspace: Workspace, emulator: tuple[EmulatorState, str]
) -> None:
    """A key the provider rejects is refused with its reason; no connection exists afterwards, and the key is not echoed."""
    _, base_url = emulator
    bad_key = provider_key()
    response = await workspace.call(
        "POST",
        "/keyvault/v1/connections",
        json={
            "provider": "openai-compatible",
            "name": unique("bad"),
            "base_url": base_url,
            "api_key": bad_key,
        },
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "key_rejected"
    assert bad_key[8:20] not in response.text
    listed = await workspace.ok("GET", "/keyvault/v1/connections")
    assert listed["data"] == [] if isinstance(listed, dict) else listed == []


async def _usage_events(stack: Stack, workspace_id: str, expected: int) -> list[Envelope]:
    nc = await nats.connect(stack.env["BYOM_NATS_URL"])
    subject = f"{stack.env['BYOM_SUBJECT_PREFIX']}.proxy.usage.recorded"
    found: list[Envelope] = []
    try:
        sub = await nc.jetstream().subscribe(
            subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )

        async def collected() -> bool:
            try:
                while True:
                    msg = await sub.next_msg(timeout=0.2)
                    envelope = Envelope.from_json(msg.data)
                    if envelope.workspaceid == workspace_id:
                        found.append(envelope)
            except nats.errors.TimeoutError:
                pass
            return len(found) >= expected

        await eventually(collected, within=20)
    finally:
        await nc.close()
    return found
