"""Calling a provider over the pooled upstream client, and naming what went wrong.

The provider adapters build each request (URL, headers with the key, body); this module
only sends it. Failures leave as :class:`~shared.providers.UpstreamFailure`, the neutral
description every front door renders in its own dialect:

- the provider answered with an error status: the adapter reads its body, scrubbed of
  the key (:func:`refusal`);
- the provider did not answer in time, refused the connection or reset it: the library's
  ``transport_failure`` reads httpx errors, the proxy speaks its own client
  (:mod:`services.proxy.http1`), so :func:`transport_failure` says the same for its
  errors (504 for a timeout, else 502). Only the error's kind is kept, not its text.
"""

from __future__ import annotations

from collections.abc import Mapping

from services.proxy.http1 import UpstreamClient, UpstreamError, UpstreamResponse
from shared.providers import (
    ChatUpstreamRequest,
    ProviderAdapter,
    UnexpectedResponse,
    UpstreamFailure,
)
from shared.providers.failures import bad_response
from shared.secrets import ProviderKey

# What a failed provider connection raises: the client's errors (its timeouts among them).
TRANSPORT_ERRORS = (UpstreamError, TimeoutError)


async def send(client: UpstreamClient, prepared: ChatUpstreamRequest) -> UpstreamResponse:
    """The provider's response to the request as the adapter built it, body not yet read.

    ValueError if a header cannot be sent as HTTP (a line break in a value): nothing is sent.
    """
    # Streams are relayed as the provider's bytes and answers are read by the adapters:
    # neither may arrive compressed, and the client does not decompress.
    headers = {**prepared.headers, "Accept-Encoding": "identity"}
    return await client.request(prepared.method, prepared.url, headers, prepared.body)


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
    return bad_response(error.provider, error.message)


def compressed(provider: str) -> UpstreamFailure:
    """A 2xx answer compressed though the proxy asked for none: neither relayed nor read."""
    return bad_response(
        provider, f"{provider} sent a compressed answer, which the gateway did not ask for"
    )


def unreadable(provider: str) -> UpstreamFailure:
    """A 2xx answer the provider's adapter could not make sense of."""
    return bad_response(provider, f"{provider} sent an answer the gateway could not read")


def oversized_event(provider: str, limit: int) -> UpstreamFailure:
    """A stream event that grew past the limit without ending."""
    return bad_response(
        provider, f"{provider} sent a stream event larger than {limit // (1024 * 1024)} MiB"
    )
