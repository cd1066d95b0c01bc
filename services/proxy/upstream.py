"""Calling a provider over the pooled aiohttp session, and naming what went wrong.

The provider adapters build each request (URL, headers with the key, body); this module
only sends it. Failures leave as :class:`~shared.providers.UpstreamFailure`, the neutral
description every front door renders in its own dialect:

- the provider answered with an error status: the adapter reads its body, scrubbed of
  the key (:func:`refusal`);
- the provider did not answer in time, refused the connection or reset it: the library's
  ``transport_failure`` reads httpx errors, the proxy speaks aiohttp, so
  :func:`transport_failure` says the same for aiohttp's (504 for a timeout, else 502).
  Nothing of the exception's text is kept: it can quote the request URL.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from shared.providers import (
    ChatUpstreamRequest,
    ProviderAdapter,
    UnexpectedResponse,
    UpstreamFailure,
)
from shared.secrets import ProviderKey

# What a failed provider connection raises: aiohttp's errors, and the timeouts of its
# ClientTimeout, which are TimeoutError (some of them aiohttp errors too).
TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)


async def send(
    session: aiohttp.ClientSession, prepared: ChatUpstreamRequest
) -> aiohttp.ClientResponse:
    """The provider's response to the request as the adapter built it, body not yet read."""
    # Streams are relayed as the provider's bytes and answers are read by the adapters:
    # neither may arrive compressed, and the session does not decompress.
    headers = {**prepared.headers, "Accept-Encoding": "identity"}
    return await session.request(prepared.method, prepared.url, data=prepared.body, headers=headers)


def transport_failure(provider: str, error: BaseException) -> UpstreamFailure:
    """A timeout, a refused connection or a reset, as a failure (504 or 502)."""
    if isinstance(error, TimeoutError):
        return UpstreamFailure(
            f"{provider} did not answer in time",
            provider=provider,
            status=504,
            category="timeout",
        )

    return UpstreamFailure(
        f"the connection failed or broke ({type(error).__name__})",
        provider=provider,
        status=502,
        category="unreachable",
    )


def refusal(
    adapter: ProviderAdapter,
    status: int,
    content: bytes,
    headers: Mapping[str, str],
    key: ProviderKey,
) -> UpstreamFailure:
    """A non-2xx answer, read by the provider's adapter and scrubbed of the key."""
    return adapter.error_from_response(status, content, headers, key)


def bad_answer(error: UnexpectedResponse) -> UpstreamFailure:
    """A 2xx answer the gateway could not read as the provider's documented format."""
    return UpstreamFailure(
        error.message,
        provider=error.provider,
        status=502,
        category="bad_response",
    )
