"""Upstream failures and refused features in each caller's dialect, by one status policy."""

from __future__ import annotations

import httpx
import pytest
from anthropic.types.shared.error_response import ErrorResponse

from shared.providers import UnsupportedFeature, UpstreamFailure, transport_failure
from shared.providers.failures import failure, retry_after
from shared.secrets import ProviderKey
from shared.translation import (
    anthropic_failure,
    anthropic_unsupported,
    openai_failure,
    openai_unsupported,
)
from tests.unit.provider_contract import leaks, new_key


def _failure(status: int, category: str, retry: str | None = None) -> UpstreamFailure:
    return UpstreamFailure(
        "said no", provider="bedrock", status=status, category=category, retry_after=retry
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "category", "openai_status", "anthropic_status", "anthropic_type"),
    [
        (400, "invalid_request", 400, 400, "invalid_request_error"),
        (401, "authentication", 502, 502, "api_error"),
        (403, "permission", 502, 502, "api_error"),
        (404, "not_found", 404, 404, "not_found_error"),
        (413, "request_too_large", 413, 413, "request_too_large"),
        (429, "rate_limited", 429, 429, "rate_limit_error"),
        (500, "server_error", 502, 502, "api_error"),
        (503, "overloaded", 503, 529, "overloaded_error"),
        (529, "overloaded", 503, 529, "overloaded_error"),
        (504, "timeout", 504, 504, "timeout_error"),
    ],
)
def test_each_upstream_status_has_one_answer_per_dialect(
    status: int, category: str, openai_status: int, anthropic_status: int, anthropic_type: str
) -> None:
    """The status policy is the same for both doors; only the wording differs."""
    upstream = _failure(status, category, "5")

    as_openai = openai_failure(upstream, "team-bedrock")
    as_anthropic = anthropic_failure(upstream, "team-bedrock")

    assert as_openai.status == openai_status
    assert as_anthropic.status == anthropic_status
    assert as_anthropic.body["error"]["type"] == anthropic_type
    assert "team-bedrock" in as_openai.body["error"]["message"]
    assert "team-bedrock" in as_anthropic.body["error"]["message"]
    if anthropic_type != "request_too_large":
        ErrorResponse.model_validate(as_anthropic.body)
    kept = status >= 429 and status not in (401, 403)
    assert ("Retry-After" in as_openai.headers) is kept
    assert ("Retry-After" in as_anthropic.headers) is kept


def test_a_refused_feature_names_its_field_in_both_dialects() -> None:
    refused = UnsupportedFeature(
        "messages[1].content[0]", "'input_audio' content is not supported by Anthropic."
    )

    assert openai_unsupported(refused).body["error"]["param"] == "messages[1].content[0]"
    assert openai_unsupported(refused).status == 400
    body = anthropic_unsupported(refused).body
    ErrorResponse.model_validate(body)
    assert body["error"]["message"].startswith("messages[1].content[0]: ")


def test_failure_messages_are_scrubbed_and_short() -> None:
    key = new_key()
    made = failure("openai", 400, f"bad key {key} " + "x" * 1000, ProviderKey(key))

    assert leaks(made.message, key) == []
    assert len(made.message) <= 300


@pytest.mark.parametrize(
    ("value", "kept"),
    [("3", "3"), ("1.5", "1.5"), ("Wed, 21 Oct 2015 07:28:00 GMT", None), ("-1", None)],
)
def test_retry_after_keeps_seconds_only(value: str, kept: str | None) -> None:
    assert retry_after({"Retry-After": value}) == kept


def test_timeouts_and_resets_become_504_and_502() -> None:
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")

    timed_out = transport_failure("openai", httpx.ReadTimeout("slow", request=request))
    reset = transport_failure("openai", httpx.RemoteProtocolError("reset", request=request))

    assert (timed_out.status, timed_out.category) == (504, "timeout")
    assert (reset.status, reset.category) == (502, "unreachable")
    assert "127.0.0.1" not in reset.message
    assert openai_failure(timed_out).status == 504
