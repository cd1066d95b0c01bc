"""Adapter for Anthropic's API: ``x-api-key`` with ``anthropic-version``, Messages, models.

The key goes in ``x-api-key`` (the API also takes ``Authorization: Bearer``, which the
2.x SDKs send; ``x-api-key`` wins when both are present).

``Endpoint.base_url`` carries the version path (``https://api.anthropic.com/v1``).
``GET /models`` pages with ``limit``, ``after_id``, ``has_more`` and ``last_id``. A chat body
in OpenAI's format is translated to the Messages API (see :mod:`anthropic_wire`); an
Anthropic-style client's own request is passed through with its ``anthropic-version`` and
``anthropic-beta`` headers, and so is ``/messages/count_tokens``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import httpx
import orjson

from shared.providers import anthropic_wire, failures
from shared.providers.anthropic_wire import AnthropicStreamDecoder
from shared.providers.base import (
    ChatUpstreamRequest,
    Door,
    Endpoint,
    UpstreamFailure,
    UpstreamModel,
    Usage,
)
from shared.providers.http import Page, ProviderHttp, Query, follow_pages
from shared.providers.openai_compatible import base_url
from shared.secrets import ProviderKey

# The API version this adapter's translations are written against. 2023-06-01 still
# takes temperature and top_p, which OpenAI-style clients send and 2026-10-21 refuses;
# a pass-through request keeps the client's own version instead.
ANTHROPIC_VERSION: Final = "2023-06-01"
_PAGE_LIMIT: Final = 100
_DOOR_PATHS: Final[Mapping[str, str]] = {
    "anthropic-messages": "/messages",
    "anthropic-count-tokens": "/messages/count_tokens",
}
# Client headers the Messages API defines; nothing else of the client's reaches Anthropic.
_FORWARDED_HEADERS: Final = ("anthropic-version", "anthropic-beta")


def _read_error(content: bytes) -> tuple[str | None, str]:
    try:
        payload = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None, content.decode("utf-8", errors="replace")

    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        message = error.get("message")
        return (
            str(error.get("type")) if error.get("type") else None,
            message if isinstance(message, str) else "",
        )

    return None, content.decode("utf-8", errors="replace")


class AnthropicAdapter:
    """Checks keys, lists models and carries chat calls in Anthropic's wire format."""

    def __init__(self, kind: str = "anthropic") -> None:
        self.kind = kind
        self.native_doors: frozenset[Door] = frozenset(
            {"anthropic-messages", "anthropic-count-tokens"}
        )
        self._http = ProviderHttp(kind, _read_error)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r})"

    async def verify_key(
        self, client: httpx.AsyncClient, endpoint: Endpoint, key: ProviderKey
    ) -> None:
        """Return if ``GET /models?limit=1`` accepts the key; raise a ProviderError otherwise."""
        await self._page(client, endpoint, key, {"limit": 1})

    async def list_models(
        self, client: httpx.AsyncClient, endpoint: Endpoint, key: ProviderKey
    ) -> list[UpstreamModel]:
        """Every model of ``GET /models``, following ``after_id`` until ``has_more`` is false."""

        def following(page: Page) -> Query | None:
            if page.get("has_more") is not True:
                return None

            cursor = page.get("last_id")
            if not isinstance(cursor, str) or not cursor:
                raise self._http.unexpected("a model page with more to come but no 'last_id'")

            return {"limit": _PAGE_LIMIT, "after_id": cursor}

        pages = await follow_pages(
            self.kind,
            lambda query: self._page(client, endpoint, key, query),
            {"limit": _PAGE_LIMIT},
            following,
        )
        return [_model(entry) for page in pages for entry in page["data"]]

    def chat_request(
        self, endpoint: Endpoint, key: ProviderKey, body: dict[str, Any]
    ) -> ChatUpstreamRequest:
        """``POST /messages`` with the OpenAI body translated; UnsupportedFeature names a field."""
        request = anthropic_wire.messages_request(body)
        headers = {**self._headers(key), "Content-Type": "application/json"}
        if request.get("stream"):
            headers["Accept"] = "text/event-stream"
        return ChatUpstreamRequest(
            url=f"{base_url(endpoint)}/messages", headers=headers, body=orjson.dumps(request)
        )

    def native_request(
        self,
        endpoint: Endpoint,
        key: ProviderKey,
        door: Door,
        body: bytes,
        headers: Mapping[str, str],
    ) -> ChatUpstreamRequest:
        """The client's Messages or count_tokens body, with its anthropic-* headers."""
        path = _DOOR_PATHS.get(door)
        if path is None:
            raise LookupError(f"{self.kind} does not speak {door} natively")

        forwarded = {name: value for name in _FORWARDED_HEADERS if (value := headers.get(name))}
        return ChatUpstreamRequest(
            url=f"{base_url(endpoint)}{path}",
            headers={**self._headers(key), **forwarded, "Content-Type": "application/json"},
            body=body,
        )

    def response_to_openai(self, content: bytes, *, model: str) -> dict[str, Any]:
        message = self._http.answer(content, "a message", needs=("content", list))
        return anthropic_wire.message_to_openai(message, model)

    def stream_decoder(self, *, model: str, key: ProviderKey) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder(model, key, self.kind)

    def error_from_response(
        self, status: int, content: bytes, headers: Mapping[str, str], key: ProviderKey
    ) -> UpstreamFailure:
        message, category = anthropic_wire.error_category(content, status)
        return failures.failure(self.kind, status, message, key, category=category, headers=headers)

    def usage_from_response(self, body: dict[str, Any]) -> Usage | None:
        return anthropic_wire.usage_of(body.get("usage"))

    def usage_from_stream_event(self, event: dict[str, Any]) -> Usage | None:
        # message_start carries the input count inside the message; message_delta the
        # running output count at the top.
        if event.get("type") == "message_start" and isinstance(event.get("message"), dict):
            return anthropic_wire.usage_of(event["message"].get("usage"))

        return anthropic_wire.usage_of(event.get("usage"))

    def tokens_from_count_response(self, content: bytes) -> int:
        """``input_tokens`` of a ``/messages/count_tokens`` answer."""
        try:
            payload = orjson.loads(content)
        except orjson.JSONDecodeError:
            payload = None
        tokens = payload.get("input_tokens") if isinstance(payload, dict) else None
        if not isinstance(tokens, int) or isinstance(tokens, bool):
            raise self._http.unexpected("a token count without 'input_tokens'")

        return tokens

    def _headers(self, key: ProviderKey) -> dict[str, str]:
        return {"x-api-key": key.reveal(), "anthropic-version": ANTHROPIC_VERSION}

    async def _page(
        self,
        client: httpx.AsyncClient,
        endpoint: Endpoint,
        key: ProviderKey,
        params: dict[str, str | int],
    ) -> dict[str, Any]:
        response = await self._http.get(
            client,
            f"{base_url(endpoint)}/models",
            key=key,
            headers=self._headers(key),
            params=params,
            call="GET /models",
        )
        page = self._http.json(response, "a model list")
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            raise self._http.unexpected("a model list without a 'data' array")

        if not all(isinstance(e, dict) and isinstance(e.get("id"), str) for e in page["data"]):
            raise self._http.unexpected("a model without a string 'id'")

        return page


def _model(entry: dict[str, Any]) -> UpstreamModel:
    return UpstreamModel(
        id=entry["id"], owned_by="anthropic", created=_epoch(entry.get("created_at")), raw=entry
    )


def _epoch(value: object) -> int | None:
    if not isinstance(value, str):
        return None

    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None
