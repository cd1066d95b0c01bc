"""The usage event the proxy writes by hand is the event the schema describes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest

from services.proxy.usage import _Recorded
from shared.events.envelope import Envelope
from shared.events.schemas import UsageRecorded


def usage(**overrides: object) -> UsageRecorded:
    fields: dict[str, object] = {
        "request_id": uuid.uuid4().hex,
        "user_id": "user-1",
        "token_id": "token-1",
        "model_id": "model-1",
        "model_name": "openai/gpt-4o",
        "connection_id": "connection-1",
        "provider": "openai",
        "operation": "chat",
        "streamed": True,
        "status": 200,
        "input_tokens": 12,
        "output_tokens": 34,
        "duration_ms": 2.5,
    }
    fields.update(overrides)
    # As the proxy makes it: constructed without validation, defaults filled in.
    return UsageRecorded.model_construct(**fields)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"source": "managed", "alias": "fast", "cached_input_tokens": 5, "reasoning_tokens": 7},
        {"source": "byom", "status": 499, "streamed": False, "duration_ms": 0.01},
    ],
)
def test_the_hand_written_envelope_is_the_schemas_envelope(overrides: dict[str, object]) -> None:
    recorded = _Recorded(usage(**overrides), "workspace-1", "user-1", datetime.now(UTC))

    event_id, payload = recorded.encoded()

    expected = Envelope(
        id=event_id,
        source="/byom/proxy",
        type=UsageRecorded.event_type(),
        subject=f"usage-{recorded.usage.request_id}",
        time=recorded.at,
        data=UsageRecorded.model_validate(recorded.usage.__dict__).model_dump(mode="json"),
        workspaceid="workspace-1",
        actorid="user-1",
        correlationid=recorded.usage.request_id,
        streamid=f"usage-{recorded.usage.request_id}",
        streamversion=1,
    )
    assert orjson.loads(payload) == orjson.loads(expected.to_json())
    parsed = Envelope.from_json(payload)
    assert parsed == expected
    assert UsageRecorded.model_validate(parsed.data) == UsageRecorded.model_validate(
        recorded.usage.__dict__
    )


def test_the_event_id_is_the_request_id_so_a_republished_event_is_the_same_event() -> None:
    request_id = uuid.uuid4()
    recorded = _Recorded(usage(request_id=request_id.hex), "w", "u", datetime.now(UTC))

    assert recorded.encoded()[0] == str(request_id)
    assert recorded.encoded() == recorded.encoded()
