"""The GET calls of a key check or a model listing, for every adapter.

One log line per call with method, host, status and latency: never a full URL or the
headers, which can carry the key. httpx exceptions are never chained into ours, because
they hold the request and its credentials. What the provider said is quoted short and
scrubbed of the key.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import orjson
import structlog

from shared.providers.base import KeyRejected, ProviderUnavailable, UnexpectedResponse
from shared.providers.scrubbing import scrub
from shared.secrets import ProviderKey

_log = structlog.get_logger("shared.providers")

_EXCERPT_LIMIT: Final = 200
# Bound the text we scrub: the excerpt is cut to _EXCERPT_LIMIT afterwards anyway.
_SCRUB_INPUT_LIMIT: Final = 2000
# Statuses that say "try again later" rather than "this key or URL is wrong".
# A provider that keeps answering "more" is not followed past this many pages.
MAX_PAGES: Final = 1000
_TRANSIENT_STATUSES: Final = frozenset({408, 429})

# Reads a provider's error body: (its error code or type, its message).
ErrorReader = Callable[[bytes], tuple[str | None, str]]
# Says whether a non-401/403 answer still means "this key is refused" (Gemini answers 400).
KeyRefusal = Callable[[int, bytes], bool]


def _never(status: int, content: bytes) -> bool:
    return False


class ProviderHttp:
    """GETs one provider's listing routes and turns every failure into a ProviderError."""

    def __init__(
        self, kind: str, read_error: ErrorReader, *, refuses_key: KeyRefusal = _never
    ) -> None:
        self.kind = kind
        self._read_error = read_error
        self._refuses_key = refuses_key

    async def get(
        self,
        client: httpx.AsyncClient,
        url: str,
        *,
        key: ProviderKey,
        headers: Mapping[str, str],
        params: Mapping[str, str | int] | None = None,
        call: str,
    ) -> httpx.Response:
        """The provider's 2xx answer; ``call`` (``"GET /models"``) names it in messages."""
        started = time.perf_counter()
        try:
            response = await client.get(url, params=params, headers=dict(headers))
        except httpx.TimeoutException:
            self._log_call(url, started, error="timeout")
            raise ProviderUnavailable(
                f"{self.kind} did not answer in time", provider=self.kind
            ) from None
        except httpx.TransportError as exc:
            self._log_call(url, started, error=type(exc).__name__)
            raise ProviderUnavailable(
                f"{self.kind} could not be reached ({type(exc).__name__})", provider=self.kind
            ) from None
        except httpx.InvalidURL:
            raise ProviderUnavailable(
                f"the base URL of {self.kind} is not a valid URL", provider=self.kind
            ) from None
        except httpx.RequestError as exc:
            self._log_call(url, started, error=type(exc).__name__)
            raise UnexpectedResponse(
                f"{self.kind} sent an unreadable answer ({type(exc).__name__})",
                provider=self.kind,
            ) from None

        self._log_call(url, started, status=response.status_code)
        self._raise_for_status(response, key, call)
        return response

    def json(self, response: httpx.Response, what: str) -> Any:
        """The JSON of a 2xx answer; UnexpectedResponse naming ``what`` if it is not JSON."""
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise self.unexpected(f"{what} that is not JSON") from None

    def answer(
        self, content: bytes, what: str, needs: tuple[str, type] | None = None
    ) -> dict[str, Any]:
        """A 2xx answer's JSON object, holding the field ``needs`` names with its type."""
        try:
            payload = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise self.unexpected(f"{what} that is not JSON") from None

        if not isinstance(payload, dict):
            raise self.unexpected(f"{what} that is not a JSON object")

        if needs is not None and not isinstance(payload.get(needs[0]), needs[1]):
            raise self.unexpected(f"{what} without '{needs[0]}'")

        return payload

    def unexpected(self, what: str) -> UnexpectedResponse:
        return UnexpectedResponse(f"{self.kind} sent {what}", provider=self.kind, status=200)

    def _raise_for_status(self, response: httpx.Response, key: ProviderKey, call: str) -> None:
        status = response.status_code
        if response.is_success:
            return

        reason = self._describe(response, key)
        if status in (401, 403) or self._refuses_key(status, response.content):
            raise KeyRejected(
                f"{self.kind} rejected the key ({reason})", provider=self.kind, status=status
            )

        if status in _TRANSIENT_STATUSES or status >= 500:
            raise ProviderUnavailable(
                f"{self.kind} could not answer now ({reason})", provider=self.kind, status=status
            )

        raise UnexpectedResponse(
            f"{self.kind} answered {call} with ({reason}); is the base URL right?",
            provider=self.kind,
            status=status,
        )

    def _describe(self, response: httpx.Response, key: ProviderKey) -> str:
        """``"401 invalid_api_key: Incorrect API key provided…"``, scrubbed and short."""
        code, message = self._read_error(response.content)
        status = f"{response.status_code} {code}" if code else str(response.status_code)
        message = " ".join(message[:_SCRUB_INPUT_LIMIT].split())
        text = scrub(f"{status}: {message}" if message else status, key.reveal())
        if len(text) <= _EXCERPT_LIMIT:
            return text

        return text[: _EXCERPT_LIMIT - 1] + "…"

    def _log_call(
        self, url: str, started: float, *, status: int | None = None, error: str | None = None
    ) -> None:
        # Host only: a full URL or the headers could carry credentials.
        _log.info(
            "provider_call",
            provider=self.kind,
            method="GET",
            host=host_of(url),
            status=status,
            error=error,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )


def host_of(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def body_text(content: bytes) -> str:
    return content.decode("utf-8", errors="replace")


Query = dict[str, str | int]
Page = dict[str, Any]


async def follow_pages(
    kind: str,
    fetch: Callable[[Query], Awaitable[Page]],
    first: Query,
    following: Callable[[Page], Query | None],
    what: str = "models",
) -> list[Page]:
    """Every page of a listing, from the ``first`` query on.

    ``following`` reads a page's cursor into the next page's query, or None after the
    last page (raising UnexpectedResponse if the cursor is malformed). A query asked
    twice, or more than ``MAX_PAGES`` pages, is UnexpectedResponse: a provider that loops
    must not keep a sync busy forever.
    """
    pages: list[Page] = []
    asked: set[tuple[tuple[str, str | int], ...]] = set()
    query: Query | None = first
    while query is not None:
        if len(pages) == MAX_PAGES:
            raise UnexpectedResponse(
                f"{kind} listed more than {MAX_PAGES} pages of {what}", provider=kind
            )

        marker = tuple(sorted(query.items()))
        if marker in asked:
            raise UnexpectedResponse(f"{kind} repeated a page of {what}", provider=kind)

        asked.add(marker)
        page = await fetch(query)
        pages.append(page)
        query = following(page)
    return pages
