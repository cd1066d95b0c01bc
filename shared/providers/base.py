"""What every provider adapter offers, and the errors it may raise.

Exception tree::

    ProviderError                 the provider could not do what was asked
    ├── KeyRejected               the provider refused the key (401/403 on a key check)
    ├── ProviderUnavailable       network failure, timeout, 5xx, or rate limit on a check
    └── UnexpectedResponse        the provider answered something its docs do not allow

Messages of these errors are shown to admins. They never contain the key, and they
quote at most a short, key-scrubbed excerpt of what the provider said.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from shared.secrets import ProviderKey


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
    """Token counts of one call, as the provider reported them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class ChatUpstreamRequest:
    """A chat request ready to send: the proxy only adds its HTTP client."""

    url: str
    # The headers carry the provider key: never part of a repr.
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)


class ProviderAdapter(Protocol):
    """One provider's wire format."""

    kind: str

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
        """The upstream request for an OpenAI-style chat body whose model is already upstream's."""
        ...

    def usage_from_response(self, body: dict[str, Any]) -> Usage | None:
        """Usage of a non-streamed answer, if it carries any."""
        ...

    def usage_from_stream_event(self, event: dict[str, Any]) -> Usage | None:
        """Usage carried by one decoded stream event, if any."""
        ...
