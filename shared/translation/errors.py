"""Upstream failures and refused features in the caller's dialect.

The status a member sees follows one policy for every door:

| upstream | member sees | why |
|---|---|---|
| 401/403 (key refused) | 502 | the workspace's provider key is the admin's problem, not the member's |
| 400, 404, 409, 413, 415, 422 | same status | the request itself was refused |
| 429 | 429, ``Retry-After`` kept | the SDKs back off and retry on their own |
| 503, 529 (overloaded) | 503 (OpenAI) or 529 (Anthropic), ``Retry-After`` kept | both retryable |
| timeout | 504 | |
| connection failure, any other status | 502, ``Retry-After`` kept | |

Messages name the provider (the connection's name, as members know it) and quote the
provider's scrubbed excerpt; UpstreamFailure messages never hold the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from shared.providers.base import UnsupportedFeature, UpstreamFailure

_SAME_STATUS: Final = frozenset({400, 404, 409, 413, 415, 422})
_ANTHROPIC_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """What to send back: status, JSON body, extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def openai_failure(failure: UpstreamFailure, provider: str | None = None) -> ErrorReply:
    """An upstream failure as OpenAI's error object."""
    status, code, message = _policy(failure, provider or failure.provider)
    error_type = {
        429: "rate_limit_error",
        502: "api_error",
        503: "api_error",
        504: "api_error",
    }.get(status, "invalid_request_error" if status < 500 else "api_error")
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return ErrorReply(status, body, _retry_headers(failure, status))


def anthropic_failure(failure: UpstreamFailure, provider: str | None = None) -> ErrorReply:
    """An upstream failure as Anthropic's error object (529 for an overloaded provider)."""
    status, _, message = _policy(failure, provider or failure.provider)
    if failure.category == "overloaded":
        status = 529
    body = {"type": "error", "error": {"type": _anthropic_type(status), "message": message}}
    return ErrorReply(status, body, _retry_headers(failure, status))


def anthropic_error_event(failure: UpstreamFailure, provider: str | None = None) -> dict[str, Any]:
    """The ``error`` event of an Anthropic stream that failed midway."""
    return anthropic_failure(failure, provider).body


def openai_stream_error(failure: UpstreamFailure, provider: str | None = None) -> dict[str, Any]:
    """The ``{"error": …}`` event OpenAI sends when a chat stream fails midway."""
    return openai_failure(failure, provider).body


def openai_unsupported(error: UnsupportedFeature) -> ErrorReply:
    body = {
        "error": {
            "message": error.message,
            "type": "invalid_request_error",
            "param": error.field,
            "code": "unsupported_feature",
        }
    }
    return ErrorReply(400, body, {})


def anthropic_unsupported(error: UnsupportedFeature) -> ErrorReply:
    # Anthropic's error object has no "param": the field leads the message instead.
    message = f"{error.field}: {error.message}"
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    return ErrorReply(400, body, {})


def _policy(failure: UpstreamFailure, provider: str) -> tuple[int, str, str]:
    """(status for the member, OpenAI error code, message)."""
    said = failure.message
    if failure.category in ("authentication", "permission") and failure.status in (401, 403):
        return (
            502,
            "upstream_auth_failed",
            f"The provider '{provider}' refused the gateway's credentials for this model. "
            "A workspace admin needs to check the provider connection.",
        )

    if failure.category == "rate_limited" or failure.status == 429:
        return 429, "rate_limit_exceeded", f"The provider '{provider}' is rate limiting: {said}"

    if failure.status in _SAME_STATUS:
        return (
            failure.status,
            "upstream_bad_request",
            f"The provider '{provider}' refused the request: {said}",
        )

    if failure.category == "timeout":
        return 504, "upstream_timeout", f"The provider '{provider}' did not answer in time."

    if failure.category == "overloaded":
        return 503, "upstream_overloaded", f"The provider '{provider}' is overloaded: {said}"

    return (
        502,
        "upstream_error",
        f"The provider '{provider}' failed to answer (status {failure.status}): {said}",
    )


def _anthropic_type(status: int) -> str:
    if status in _ANTHROPIC_TYPES:
        return _ANTHROPIC_TYPES[status]

    return "invalid_request_error" if status < 500 else "api_error"


def _retry_headers(failure: UpstreamFailure, status: int) -> dict[str, str]:
    # A refused provider key does not heal by waiting: no Retry-After for it.
    if failure.retry_after is None or status < 429 or failure.status in (401, 403):
        return {}

    return {"Retry-After": failure.retry_after}
