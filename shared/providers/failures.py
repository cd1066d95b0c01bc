"""Turning what went wrong upstream into an UpstreamFailure every front door can render.

Each adapter reads its provider's error body for a message (and sometimes a better
category than the status gives); everything else is common: the category a status
means, the ``Retry-After`` to keep, the excerpt cut short and scrubbed of the key, and
what a timeout or a reset becomes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import httpx

from shared.providers.base import FailureCategory, UpstreamFailure
from shared.providers.scrubbing import scrub
from shared.secrets import ProviderKey

EXCERPT_LIMIT: Final = 300
# Bound the text we scrub: the excerpt is cut to EXCERPT_LIMIT afterwards anyway.
_SCRUB_INPUT_LIMIT: Final = 4000

_BY_STATUS: Final[Mapping[int, FailureCategory]] = {
    400: "invalid_request",
    401: "authentication",
    403: "permission",
    404: "not_found",
    408: "timeout",
    409: "invalid_request",
    413: "request_too_large",
    415: "invalid_request",
    422: "invalid_request",
    429: "rate_limited",
    503: "overloaded",
    504: "timeout",
    529: "overloaded",
}


def category_for_status(status: int) -> FailureCategory:
    """The neutral category an HTTP status means when the body says nothing better."""
    known = _BY_STATUS.get(status)
    if known is not None:
        return known

    if 400 <= status < 500:
        return "invalid_request"

    return "server_error"


def excerpt(text: str, key: ProviderKey) -> str:
    """``text`` on one line, scrubbed of the key and anything key-like, cut short."""
    flat = " ".join(text[:_SCRUB_INPUT_LIMIT].split())
    clean = scrub(flat, key.reveal())
    if len(clean) <= EXCERPT_LIMIT:
        return clean

    return clean[: EXCERPT_LIMIT - 1] + "…"


def retry_after(headers: Mapping[str, str]) -> str | None:
    """The provider's ``Retry-After`` header as sent, if it is a plain number of seconds.

    An HTTP date is dropped rather than relayed: the SDKs read seconds more reliably.
    """
    value = _header(headers, "retry-after")
    if value is None:
        return None

    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        return None

    return value if seconds >= 0 else None


def failure(
    provider: str,
    status: int,
    message: str,
    key: ProviderKey,
    *,
    category: FailureCategory | None = None,
    headers: Mapping[str, str] | None = None,
) -> UpstreamFailure:
    """An UpstreamFailure whose message is the scrubbed excerpt of ``message``."""
    return UpstreamFailure(
        excerpt(message, key) or f"status {status}",
        provider=provider,
        status=status,
        category=category or category_for_status(status),
        retry_after=retry_after(headers) if headers is not None else None,
    )


def transport_failure(provider: str, error: httpx.HTTPError) -> UpstreamFailure:
    """A timeout, a refused connection or a reset, as a failure (504 or 502).

    Nothing of the exception's text is kept: httpx errors can quote the request URL.
    """
    if isinstance(error, httpx.TimeoutException):
        return UpstreamFailure(
            f"{provider} did not answer in time",
            provider=provider,
            status=504,
            category="timeout",
        )

    return UpstreamFailure(
        f"{provider} could not be reached ({type(error).__name__})",
        provider=provider,
        status=502,
        category="unreachable",
    )


def bad_response(provider: str, message: str) -> UpstreamFailure:
    """A 2xx the gateway cannot pass on as the provider's answer: a 502."""
    return UpstreamFailure(message, provider=provider, status=502, category="bad_response")


def stream_ended_early(provider: str) -> UpstreamFailure:
    return bad_response(provider, f"{provider} ended the stream before the answer was complete")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # httpx.Headers is case-insensitive already; a plain dict from a test may not be.
    value = headers.get(name)
    if value is not None:
        return value

    for candidate, found in headers.items():
        if candidate.lower() == name:
            return found

    return None
