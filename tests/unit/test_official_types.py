"""The official-type checks refuse what each provider's SDK would not accept.

Without these, a check that let everything through would make every contract test
look like proof of the wire format.
"""

from __future__ import annotations

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer

from tests.emulator.eventstream import event
from tests.unit.official_types import BY_KIND

BEDROCK_URL = "http://127.0.0.1:9/bedrock/model/amazon.nova-lite-v1%3A0/converse"


def sse(*payloads: object) -> bytes:
    return b"".join(b"data: " + orjson.dumps(p) + b"\n\n" for p in payloads)


@pytest.mark.parametrize(
    ("kind", "body", "refused"),
    [
        ("openai", {"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "role"),
        ("anthropic", {"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ("google", {"contents": [{"role": "user", "parts": [{"txt": "x"}]}]}, "txt"),
        ("google", {"contents": [], "generation_config": {}}, "generation_config"),
        ("bedrock", {"messages": [], "inferenceConfig": {"maxTokens": "9"}}, "maxTokens"),
        ("bedrock", {"messages": [], "topK": 3}, "topK"),
    ],
)
def test_a_request_the_sdk_would_refuse_is_refused(
    kind: str, body: dict[str, object], refused: str
) -> None:
    with pytest.raises(AssertionError, match=refused):
        BY_KIND[kind].request(BEDROCK_URL, orjson.dumps(body))


@pytest.mark.parametrize(
    ("kind", "answer", "refused"),
    [
        ("openai", {"id": "c", "object": "chat.completion", "choices": "none"}, "choices"),
        ("anthropic", {"type": "message", "id": "m", "content": []}, "role"),
        ("google", {"candidates": [{"finish_reason_text": "STOP"}]}, "finish_reason_text"),
        ("bedrock", {"output": {"message": {"role": "assistant", "content": []}}}, "stopReason"),
        ("bedrock", {"stopReason": "done", "usage": {}, "metrics": {}, "output": {}}, "done"),
    ],
)
def test_an_answer_the_sdk_would_refuse_is_refused(
    kind: str, answer: dict[str, object], refused: str
) -> None:
    with pytest.raises(AssertionError, match=refused):
        BY_KIND[kind].answer(orjson.dumps(answer))


def test_stream_events_are_each_checked() -> None:
    with pytest.raises(AssertionError, match="content_block"):
        BY_KIND["anthropic"].stream(sse({"type": "content_block_start", "index": 0}))
    with pytest.raises(AssertionError, match=r"x_groq|choices"):
        BY_KIND["groq"].stream(sse({"id": "c", "object": "chat.completion.chunk", "x_groq": 3}))
    frame = event(
        "contentBlockDelta", orjson.dumps({"contentBlockIndex": 0, "delta": {"txt": "x"}})
    )
    assert len(list(_buffer(frame))) == 1
    with pytest.raises(AssertionError, match="txt"):
        BY_KIND["bedrock"].stream(frame)


def test_model_pages_are_checked() -> None:
    with pytest.raises(AssertionError, match="inputTokens"):
        BY_KIND["google"].models_page(
            "/models", orjson.dumps({"models": [{"name": "models/x", "inputTokens": 5}]})
        )
    with pytest.raises(AssertionError, match="modelArn"):
        BY_KIND["bedrock"].models_page(
            "/foundation-models", orjson.dumps({"modelSummaries": [{"modelId": "x"}]})
        )


def _buffer(frame: bytes) -> EventStreamBuffer:
    buffer = EventStreamBuffer()
    buffer.add_data(frame)
    return buffer
