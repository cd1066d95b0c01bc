"""Adapter for OpenAI's REST format and the servers that speak it (vLLM, Ollama, and others).

``Endpoint.base_url`` carries the version path (``https://host/v1``); every path here is
relative to it. The key travels only in the ``Authorization`` header. Whatever a provider
says back is scrubbed of the key before it reaches an exception message, because providers
echo a rejected key in their error text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final, TypeGuard
from urllib.parse import urlsplit

import httpx
import orjson
import structlog

from shared.providers.base import (
    ChatUpstreamRequest,
    Endpoint,
    KeyRejected,
    ProviderUnavailable,
    UnexpectedResponse,
    UpstreamModel,
    Usage,
)
from shared.providers.scrubbing import scrub
from shared.secrets import ProviderKey

_log = structlog.get_logger(__name__)

_VERIFY_LIMIT: Final = 1
_PAGE_LIMIT: Final = 100
_MAX_PAGES: Final = 1000
_EXCERPT_LIMIT: Final = 200
# Bound the text we scrub: the excerpt is cut to _EXCERPT_LIMIT afterwards anyway.
_SCRUB_INPUT_LIMIT: Final = 2000
# Statuses that say "try again later" rather than "this key or URL is wrong".
_TRANSIENT_STATUSES: Final = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class _Page:
    entries: list[dict[str, Any]]
    has_more: bool
    last_id: str | None


class OpenAICompatibleAdapter:
    """Checks keys, lists models and builds chat requests in OpenAI's wire format."""

    def __init__(self, kind: str = "openai-compatible") -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r})"

    async def verify_key(
        self, client: httpx.AsyncClient, endpoint: Endpoint, key: ProviderKey
    ) -> None:
        """Return if ``GET /models`` accepts the key; raise a ProviderError otherwise."""
        response = await self._get(client, endpoint, key, "/models", {"limit": _VERIFY_LIMIT})
        self._parse_page(response)

    async def list_models(
        self, client: httpx.AsyncClient, endpoint: Endpoint, key: ProviderKey
    ) -> list[UpstreamModel]:
        """Every model of ``GET /models``, following ``has_more``/``last_id`` pagination."""
        models: list[UpstreamModel] = []
        cursors_seen: set[str] = set()
        params: dict[str, str | int] = {"limit": _PAGE_LIMIT}
        for _ in range(_MAX_PAGES):
            page = self._parse_page(await self._get(client, endpoint, key, "/models", params))
            models.extend(self._model(entry) for entry in page.entries)
            if not page.has_more:
                return models

            cursor = self._next_cursor(page)
            if cursor in cursors_seen:
                raise UnexpectedResponse(
                    f"{self.kind} repeated the model page after {cursor!r}", provider=self.kind
                )

            cursors_seen.add(cursor)
            params = {"limit": _PAGE_LIMIT, "after": cursor}

        raise UnexpectedResponse(
            f"{self.kind} listed more than {_MAX_PAGES} pages of models", provider=self.kind
        )

    def chat_request(
        self, endpoint: Endpoint, key: ProviderKey, body: dict[str, Any]
    ) -> ChatUpstreamRequest:
        """``POST /chat/completions`` with the body as given; streams ask for SSE."""
        headers = {**_auth_headers(key), "Content-Type": "application/json"}
        if body.get("stream"):
            headers["Accept"] = "text/event-stream"

        return ChatUpstreamRequest(
            url=f"{_base_url(endpoint)}/chat/completions",
            headers=headers,
            body=orjson.dumps(body),
        )

    def usage_from_response(self, body: dict[str, Any]) -> Usage | None:
        return _usage(body)

    def usage_from_stream_event(self, event: dict[str, Any]) -> Usage | None:
        # Only the last chunk of a stream asked with include_usage carries usage;
        # every other chunk has "usage": null.
        return _usage(event)

    async def _get(
        self,
        client: httpx.AsyncClient,
        endpoint: Endpoint,
        key: ProviderKey,
        path: str,
        params: dict[str, str | int],
    ) -> httpx.Response:
        url = f"{_base_url(endpoint)}{path}"
        started = time.perf_counter()
        # httpx errors carry the request and its Authorization header, so none is chained.
        try:
            response = await client.get(url, params=params, headers=_auth_headers(key))
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
        self._raise_for_status(response, key, f"GET {path}")
        return response

    def _raise_for_status(self, response: httpx.Response, key: ProviderKey, call: str) -> None:
        status = response.status_code
        if response.is_success:
            return

        reason = _describe_error(response, key)
        if status in (401, 403):
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

    def _parse_page(self, response: httpx.Response) -> _Page:
        try:
            payload = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise self._unexpected("a model list that is not JSON") from None

        if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
            raise self._unexpected("a model list without a 'data' array")

        entries = payload["data"]
        if not all(isinstance(e, dict) and isinstance(e.get("id"), str) for e in entries):
            raise self._unexpected("a model without a string 'id'")

        has_more = payload.get("has_more")
        if has_more is not None and not isinstance(has_more, bool):
            raise self._unexpected("a non-boolean 'has_more'")

        last_id = payload.get("last_id")
        return _Page(
            entries=entries,
            has_more=bool(has_more),
            last_id=last_id if isinstance(last_id, str) and last_id else None,
        )

    def _next_cursor(self, page: _Page) -> str:
        # OpenAI names the cursor last_id; servers that omit it still page by the last entry.
        if page.last_id is not None:
            return page.last_id

        if not page.entries:
            raise self._unexpected("'has_more' on an empty page with no 'last_id'")

        cursor: str = page.entries[-1]["id"]
        return cursor

    def _model(self, entry: dict[str, Any]) -> UpstreamModel:
        owned_by = entry.get("owned_by")
        created = entry.get("created")
        return UpstreamModel(
            id=entry["id"],
            owned_by=owned_by if isinstance(owned_by, str) else None,
            created=created if _is_count(created) else None,
            raw=entry,
        )

    def _unexpected(self, what: str) -> UnexpectedResponse:
        return UnexpectedResponse(f"{self.kind} sent {what}", provider=self.kind, status=200)

    def _log_call(
        self, url: str, started: float, *, status: int | None = None, error: str | None = None
    ) -> None:
        # Host only: a full URL or the headers could carry credentials.
        _log.info(
            "provider_call",
            provider=self.kind,
            method="GET",
            host=_host(url),
            status=status,
            error=error,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )


def _base_url(endpoint: Endpoint) -> str:
    return endpoint.base_url.rstrip("/")


def _auth_headers(key: ProviderKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.reveal()}"}


def _host(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _describe_error(response: httpx.Response, key: ProviderKey) -> str:
    """``"401 invalid_api_key: Incorrect API key provided…"``, scrubbed and short."""
    code, message = _error_fields(response)
    status = f"{response.status_code} {code}" if code else str(response.status_code)
    message = " ".join(message[:_SCRUB_INPUT_LIMIT].split())
    text = scrub(f"{status}: {message}" if message else status, key.reveal())
    if len(text) <= _EXCERPT_LIMIT:
        return text

    return text[: _EXCERPT_LIMIT - 1] + "…"


def _error_fields(response: httpx.Response) -> tuple[str | None, str]:
    """The code and message of an OpenAI error body, or the raw text of any other body."""
    try:
        payload = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None, response.text

    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        message = error.get("message")
        return (
            str(code) if code else None,
            message if isinstance(message, str) else response.text,
        )

    # Some compatible servers put a bare string in "error" or, like FastAPI, in "detail".
    for field in ("error", "detail", "message"):
        value = payload.get(field) if isinstance(payload, dict) else None
        if isinstance(value, str):
            return None, value

    return None, response.text


def _usage(payload: dict[str, Any]) -> Usage | None:
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None

    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    return Usage(
        input_tokens=_count(usage, "prompt_tokens"),
        output_tokens=_count(usage, "completion_tokens"),
        cached_input_tokens=_count(prompt_details, "cached_tokens"),
        reasoning_tokens=_count(completion_details, "reasoning_tokens"),
    )


def _count(mapping: object, name: str) -> int:
    # Compatible servers omit detail objects or send null counts; both mean none reported.
    value = mapping.get(name) if isinstance(mapping, dict) else None
    return value if _is_count(value) else 0


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
