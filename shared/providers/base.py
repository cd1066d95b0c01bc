"""What every provider adapter offers, and the errors it may raise.

The hub of every translation is OpenAI's Chat Completions format: an adapter takes an
OpenAI chat body and builds its provider's request, and turns its provider's answer and
stream back into OpenAI chat completions and ``chat.completion.chunk`` dicts. A front
door that speaks another dialect (Anthropic Messages, OpenAI Responses) translates to and
from the hub in :mod:`shared.translation`. When the caller's dialect is the provider's own
(OpenAI chat to an OpenAI-style server, Anthropic Messages to Anthropic), the proxy passes
bytes through instead: see :attr:`ProviderAdapter.native_doors`.

Exception tree::

    ProviderError                 the provider could not do what was asked
    ├── KeyRejected               the provider refused the key (401/403 on a key check)
    ├── ProviderUnavailable       network failure, timeout, 5xx, or rate limit on a check
    ├── UnexpectedResponse        the provider answered something its docs do not allow
    └── UpstreamFailure           a chat call failed upstream: status, category, Retry-After

    UnsupportedFeature (ValueError)  the request asks for what the target cannot do (a 400)

Messages of these errors are shown to admins and members. They never contain the key,
and they quote at most a short, key-scrubbed excerpt of what the provider said.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx

from shared.secrets import ProviderKey

# What kind of failure an upstream answer was; each front door picks its own error type
# and status from it (see shared.translation.errors).
FailureCategory = Literal[
    "invalid_request",
    "authentication",
    "permission",
    "not_found",
    "request_too_large",
    "rate_limited",
    "overloaded",
    "server_error",
    "timeout",
    "unreachable",
    "bad_response",
]

# The client-facing APIs ("front doors") a provider may speak natively, so the proxy can
# pass bytes through unchanged instead of translating.
Door = Literal[
    "openai-chat",
    "openai-responses",
    "openai-embeddings",
    "anthropic-messages",
    "anthropic-count-tokens",
]


class ProviderError(Exception):
    """The provider could not do what was asked."""

    def __init__(self, message: str, *, provider: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status


class KeyRejected(ProviderError):
    """The provider refused the key."""


class ProviderUnavailable(ProviderError, ConnectionError):
    """The provider could not be reached or did not answer in time."""


class UnexpectedResponse(ProviderError, ValueError):
    """The provider answered in a shape its documentation does not allow."""


class UpstreamFailure(ProviderError):
    """A chat call failed at the provider, described neutrally for any front door.

    ``status`` is the provider's HTTP status (or the closest one for a failure inside a
    stream, a timeout or a reset); ``retry_after`` is the provider's ``Retry-After`` in
    seconds, as text, so the official SDKs' own retries keep working.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int,
        category: FailureCategory,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, status=status)
        self.status: int = status
        self.category: FailureCategory = category
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"UpstreamFailure(provider={self.provider!r}, status={self.status}, "
            f"category={self.category!r}, message={self.message!r})"
        )


class UnsupportedFeature(ValueError):
    """The request asks for something the target cannot do; the proxy answers 400.

    ``field`` names the request field at fault, in the caller's own request where the
    translation knows it (``"messages[2].content[0].image_url"``, ``"n"``, ``"tool_choice"``).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a connection's provider lives: its kind and base URL (with version path)."""

    kind: str
    base_url: str


@dataclass(frozen=True, slots=True)
class UpstreamModel:
    """One model as the provider lists it."""

    id: str
    owned_by: str | None = None
    created: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one call, as the provider reported them.

    ``input_tokens`` counts every input token, cached ones included; ``cached_input_tokens``
    says how many of them were read from the provider's cache. ``output_tokens`` counts
    every output token, reasoning ones included.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def merged(self, later: Usage | None) -> Usage:
        """Counts reported across a stream: providers send running totals, so keep the largest."""
        if later is None:
            return self

        return Usage(
            input_tokens=max(self.input_tokens, later.input_tokens),
            output_tokens=max(self.output_tokens, later.output_tokens),
            cached_input_tokens=max(self.cached_input_tokens, later.cached_input_tokens),
            reasoning_tokens=max(self.reasoning_tokens, later.reasoning_tokens),
        )


@dataclass(frozen=True, slots=True)
class ChatUpstreamRequest:
    """A request ready to send: the proxy only adds its HTTP client.

    ``method`` is POST for every chat call; it is a field so pass-through and count
    requests fit the same shape.
    """

    url: str
    # The headers carry the provider key: never part of a repr.
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    method: str = "POST"


class StreamDecoder(Protocol):
    """Turns a provider's stream bytes into OpenAI ``chat.completion.chunk`` dicts.

    Feed it bytes exactly as they arrive; it keeps what is incomplete for the next call.
    Chunks all share one id, ``created`` and ``model``; tool-call argument deltas keep
    OpenAI's per-choice ``index``; the last chunk with choices carries the finish reason;
    when the provider reported usage, one more chunk with ``"choices": []`` and ``usage``
    follows (drop it if the client did not ask for ``stream_options.include_usage``).
    The OpenAI ``[DONE]`` marker is not a chunk: the writer of the client's stream adds it.
    """

    @property
    def usage(self) -> Usage | None:
        """Usage reported so far (running totals), or None."""
        ...

    @property
    def failure(self) -> UpstreamFailure | None:
        """An error the provider reported inside the stream, or an early end; then no more chunks."""
        ...

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """The chunks completed by ``data``; after a failure, nothing."""
        ...

    def close(self) -> list[dict[str, Any]]:
        """The upstream ended: flush what is left, and note a failure if it ended early."""
        ...


class ProviderAdapter(Protocol):
    """One provider's wire format.

    ``native_doors`` names the front doors whose requests the provider takes as they
    are: for those the proxy builds the upstream request with :meth:`native_request`
    and relays the provider's bytes unchanged (reading usage with ``usage_from_*``).
    For every other door it translates through the OpenAI chat hub: :meth:`chat_request`,
    then :meth:`response_to_openai` or :meth:`stream_decoder`.
    """

    kind: str
    native_doors: frozenset[Door]

    async def verify_key(
        self, client: httpx.AsyncClient, endpoint: Endpoint, key: ProviderKey
    ) -> None:
        """Return if the provider accepts the key; raise a ProviderError otherwise."""
        ...

    async def list_models(
        self, client: httpx.AsyncClient, endpoint: Endpoint, key: ProviderKey
    ) -> list[UpstreamModel]:
        """Every model the key can see, following the provider's pagination."""
        ...

    def chat_request(
        self, endpoint: Endpoint, key: ProviderKey, body: dict[str, Any]
    ) -> ChatUpstreamRequest:
        """The upstream request for an OpenAI-style chat body whose model is already upstream's.

        Raises UnsupportedFeature, naming the field, for what the provider cannot carry.
        """
        ...

    def native_request(
        self,
        endpoint: Endpoint,
        key: ProviderKey,
        door: Door,
        body: bytes,
        headers: Mapping[str, str],
    ) -> ChatUpstreamRequest:
        """The upstream request for a body of one of ``native_doors``, passed as bytes.

        ``headers`` are the client's; only those the provider's API defines for the door
        (``anthropic-version``, ``anthropic-beta``) are carried. LookupError for any other door.
        """
        ...

    def response_to_openai(self, content: bytes, *, model: str) -> dict[str, Any]:
        """A successful non-streamed answer as an OpenAI ``chat.completion`` dict.

        ``model`` names the model where the provider's answer does not.
        UnexpectedResponse if the bytes are not the provider's documented answer.
        """
        ...

    def stream_decoder(self, *, model: str, key: ProviderKey) -> StreamDecoder:
        """A fresh decoder for one streamed answer; ``key`` scrubs errors inside the stream."""
        ...

    def error_from_response(
        self, status: int, content: bytes, headers: Mapping[str, str], key: ProviderKey
    ) -> UpstreamFailure:
        """A non-2xx chat answer, neutral and scrubbed of the key."""
        ...

    def usage_from_response(self, body: dict[str, Any]) -> Usage | None:
        """Usage of a non-streamed answer in the provider's own format, if it carries any."""
        ...

    def usage_from_stream_event(self, event: dict[str, Any]) -> Usage | None:
        """Usage carried by one decoded native stream event, if any (merge with Usage.merged)."""
        ...
