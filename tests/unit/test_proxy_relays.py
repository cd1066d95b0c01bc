"""The proxy's stream relays and upstream failures, with the real provider adapters."""

from __future__ import annotations

import orjson
import pytest

from services.proxy.errors import ANTHROPIC, OPENAI
from services.proxy.http1 import UpstreamError, UpstreamTimeout
from services.proxy.messages import anthropic_error_event
from services.proxy.relays import (
    NativeReply,
    OpenAIChunkEncoder,
    TranslatedRelay,
    openai_error_event,
)
from services.proxy.responses import responses_error_event
from services.proxy.upstream import transport_failure
from shared.providers import UpstreamFailure, adapter_for
from shared.secrets import ProviderKey
from shared.translation import AnthropicStreamEncoder

KEY = ProviderKey("sk-relay-test-0123456789abcdef")


def openai_native(*, hide_usage: bool) -> NativeReply:
    return NativeReply(
        adapter_for("openai"),
        KEY,
        upstream_model="gpt-x",
        provider="team-openai",
        error_event=openai_error_event,
        is_error=lambda payload: isinstance(payload.get("error"), dict | str),
        hide_usage_only_events=hide_usage,
    )


def sse(payload: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


def chunk(content: str | None = None, finish: str | None = None) -> dict[str, object]:
    delta = {"content": content} if content is not None else {}
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "gpt-x",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def test_a_passed_through_openai_stream_keeps_its_bytes_and_counts_usage() -> None:
    """Content passes as the provider's bytes; the usage chunk the client did not ask for is read and held back."""
    relay = openai_native(hide_usage=True).relay()
    content = sse(chunk("hi")) + sse(chunk(finish="stop"))
    usage = sse({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}})

    out = relay.feed(content) + relay.feed(usage + b"data: [DONE]\n\n") + relay.close()

    assert out == content + b"data: [DONE]\n\n"
    assert relay.usage is not None
    assert (relay.usage.input_tokens, relay.usage.output_tokens) == (3, 5)
    assert relay.failure is None


def test_a_providers_error_event_is_reworded_naming_the_provider_without_the_key() -> None:
    """An OpenAI error event midway becomes the gateway's error event: provider named, key scrubbed."""
    relay = openai_native(hide_usage=False).relay()
    error = sse({"error": {"message": f"bad key {KEY.reveal()}", "code": 503}})

    out = relay.feed(sse(chunk("hi")) + error)

    assert KEY.reveal() not in out.decode()
    assert b"team-openai" in out
    assert out.startswith(sse(chunk("hi")))
    assert relay.failure is not None and relay.failure.category == "overloaded"


def test_a_passed_through_anthropic_stream_merges_usage_from_start_and_delta() -> None:
    """Anthropic's input count (message_start) and output count (message_delta) both reach the usage."""
    reply = NativeReply(
        adapter_for("anthropic"),
        KEY,
        upstream_model="claude-x",
        provider="team-claude",
        error_event=anthropic_error_event,
        is_error=lambda payload: payload.get("type") == "error",
    )
    relay = reply.relay()
    start = {
        "type": "message_start",
        "message": {"usage": {"input_tokens": 7, "output_tokens": 1, "cache_read_input_tokens": 2}},
    }
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"output_tokens": 9},
    }
    stream = (
        sse(start, "message_start")
        + sse(delta, "message_delta")
        + sse({"type": "message_stop"}, "message_stop")
    )

    out = relay.feed(stream) + relay.close()

    assert out == stream
    assert relay.usage is not None
    assert (
        relay.usage.input_tokens,
        relay.usage.cached_input_tokens,
        relay.usage.output_tokens,
    ) == (9, 2, 9)


def test_a_broken_connection_ends_a_passed_through_stream_with_one_error_event() -> None:
    """A reset midway flushes what was whole and adds the client's error event, once."""
    relay = openai_native(hide_usage=False).relay()
    relay.feed(sse(chunk("hi"))[:-1])
    failure = UpstreamFailure("reset", provider="openai", status=502, category="unreachable")

    out = relay.broken(failure)
    again = relay.broken(failure)

    assert out.startswith(b"data: ") and b'"error"' in out and b"team-openai" in out
    assert again == b""
    assert relay.failure is failure


def test_a_broken_responses_stream_ends_with_the_next_sequence_number() -> None:
    """The error event added to a relayed Responses stream continues the count of what was relayed."""
    reply = NativeReply(
        adapter_for("openai"),
        KEY,
        upstream_model="gpt-x",
        provider="team-openai",
        error_event=responses_error_event,
        numbered=True,
    )
    relay = reply.relay()
    events = [
        sse({"type": "response.created", "sequence_number": 0}, "response.created"),
        sse({"type": "response.output_text.delta", "delta": "a", "sequence_number": 1}),
        sse({"type": "response.output_text.delta", "delta": "b", "sequence_number": 12}),
    ]
    whole = b"".join(events)
    # The last event is torn across reads: only what was whole counts until it completes.
    relayed = relay.feed(whole[:-30]) + relay.feed(whole[-30:-1])
    failure = UpstreamFailure("reset", provider="openai", status=502, category="unreachable")

    out = relay.broken(failure)

    # The torn event never came whole: it is dropped, not run into the error event.
    assert relayed == events[0] + events[1]
    assert out.startswith(b"event: error")
    error = orjson.loads(out.rpartition(b"data: ")[2])
    assert error["type"] == "error" and error["sequence_number"] == 2
    assert "team-openai" in error["message"]


def test_a_translated_stream_says_the_failure_as_soon_as_the_provider_does() -> None:
    """A Gemini error midway becomes Anthropic's error event in the same read, and nothing follows it."""
    google = adapter_for("google")
    relay = TranslatedRelay(
        google.stream_decoder(model="gemini-x", key=KEY),
        AnthropicStreamEncoder(model="team/gemini-x"),
        "team-gemini",
    )
    text = {"candidates": [{"content": {"parts": [{"text": "Hel"}], "role": "model"}}]}
    error = {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}

    out = relay.feed(sse(text) + sse(error))
    rest = relay.close()

    assert b"text_delta" in out
    assert out.endswith(b"\n\n") and b"event: error" in out and b"team-gemini" in out
    assert rest == b""
    assert relay.failure is not None


def test_openai_chunks_drop_the_usage_chunk_unless_asked() -> None:
    """The hub's trailing usage chunk reaches only clients that asked for usage; the stream ends with [DONE]."""
    usage_chunk = {"choices": [], "usage": {"prompt_tokens": 1}}

    quiet = OpenAIChunkEncoder(include_usage=False)
    asked = OpenAIChunkEncoder(include_usage=True)

    assert quiet.feed(usage_chunk) == b"" and asked.feed(usage_chunk) != b""
    assert quiet.finish() == b"data: [DONE]\n\n"
    assert quiet.finish() == b""


@pytest.mark.parametrize(
    ("error", "status", "category"),
    [
        (UpstreamTimeout("timed out while reading the response body"), 504, "timeout"),
        (TimeoutError(), 504, "timeout"),
        (UpstreamError("connection refused by provider.internal.example"), 502, "unreachable"),
        (UpstreamError("connection reset in the middle of the response body"), 502, "unreachable"),
    ],
)
def test_client_failures_are_named_like_the_librarys_transport_failures(
    error: BaseException, status: int, category: str
) -> None:
    """The client's timeouts are 504, its connection failures 502, and nothing of their text is kept."""
    failure = transport_failure("team-openai", error)

    assert (failure.status, failure.category) == (status, category)
    assert str(error) not in failure.message or not str(error)


def test_both_dialects_say_the_same_refusal_in_their_own_shape() -> None:
    """A refusal has the same status on both doors: OpenAI's error object, or Anthropic's typed one."""
    openai_body = orjson.loads(OPENAI.too_large(2 * 1024 * 1024).body)
    anthropic_response = ANTHROPIC.too_large(2 * 1024 * 1024)
    anthropic_body = orjson.loads(anthropic_response.body)

    assert openai_body["error"]["code"] == "request_too_large"
    assert anthropic_response.status_code == 413
    assert anthropic_body == {
        "type": "error",
        "error": {"type": "request_too_large", "message": anthropic_body["error"]["message"]},
    }
    assert (
        orjson.loads(ANTHROPIC.bad_request("Field required.", param="max_tokens").body)["error"][
            "message"
        ]
        == "max_tokens: Field required."
    )


def test_groq_stream_usage_in_its_extension_is_counted() -> None:
    """Groq reports a stream's usage in x_groq.usage, not at the top: the passed-through stream still counts it."""
    reply = NativeReply(
        adapter_for("groq"),
        KEY,
        upstream_model="llama-x",
        provider="team-groq",
        error_event=openai_error_event,
        is_error=lambda payload: False,
        hide_usage_only_events=True,
    )
    relay = reply.relay()
    extension = {"choices": [], "x_groq": {"usage": {"prompt_tokens": 4, "completion_tokens": 6}}}

    out = relay.feed(sse(chunk("hi")) + sse(extension) + b"data: [DONE]\n\n")

    assert out == sse(chunk("hi")) + b"data: [DONE]\n\n"
    assert relay.usage is not None and relay.usage.output_tokens == 6


def test_each_door_says_where_its_clients_put_the_token() -> None:
    """OpenAI's clients send a bearer token, Anthropic's an x-api-key: a 401 speaks their terms."""
    openai_error = orjson.loads(OPENAI.unauthenticated().body)["error"]
    anthropic_response = ANTHROPIC.unauthenticated()
    anthropic_error = orjson.loads(anthropic_response.body)["error"]

    assert "Authorization: Bearer" in openai_error["message"]
    assert anthropic_response.status_code == 401
    assert anthropic_error["type"] == "authentication_error"
    assert anthropic_error["message"].count("x-api-key") == 1
