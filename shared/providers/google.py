"""Adapter for Google's Gemini API: ``x-goog-api-key``, ``generateContent``, models.

``Endpoint.base_url`` carries the version path
(``https://generativelanguage.googleapis.com/v1beta``). ``GET /models`` pages with
``pageSize`` and ``pageToken``/``nextPageToken``; only models that support
``generateContent`` are listed, since the gateway carries chat. Chat goes to
``/models/{model}:generateContent``, streams to ``:streamGenerateContent?alt=sse``.
A bad key is answered 400 ``INVALID_ARGUMENT`` with the reason ``API_KEY_INVALID``, which
counts as a rejected key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

import httpx
import orjson

from shared.providers import failures, google_wire
from shared.providers.base import (
    ChatUpstreamRequest,
    Door,
    Endpoint,
    UpstreamFailure,
    UpstreamModel,
    Usage,
)
from shared.providers.google_wire import GeminiStreamDecoder
from shared.providers.http import Page, ProviderHttp, Query, follow_pages
from shared.providers.openai_compatible import base_url
from shared.secrets import ProviderKey

_PAGE_SIZE: Final = 1000
_CHAT_METHOD: Final = "generateContent"


def _read_error(content: bytes) -> tuple[str | None, str]:
    message, _, _ = google_wire.error_of(content, 0)
    try:
        payload = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None, message
    error = payload.get("error") if isinstance(payload, dict) else None
    status = error.get("status") if isinstance(error, dict) else None
    return (str(status) if status else None), message


class GoogleAdapter:
    """Checks keys, lists models and carries chat calls in the Gemini API's format."""

    def __init__(self, kind: str = "google") -> None:
        self.kind = kind
        self.native_doors: frozenset[Door] = frozenset()
        self._http = ProviderHttp(kind, _read_error, refuses_key=google_wire.refuses_key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r})"

    async def verify_key(
        self, client: httpx.AsyncClient, endpoint: Endpoint, key: ProviderKey
    ) -> None:
        await self._page(client, endpoint, key, {"pageSize": 1})

    async def list_models(
        self, client: httpx.AsyncClient, endpoint: Endpoint, key: ProviderKey
    ) -> list[UpstreamModel]:
        """Every chat model of ``GET /models``, following ``nextPageToken``."""

        def following(page: Page) -> Query | None:
            token = page.get("nextPageToken")
            if not token:
                return None

            if not isinstance(token, str):
                raise self._http.unexpected("a model page token that is not a string")

            return {"pageSize": _PAGE_SIZE, "pageToken": token}

        pages = await follow_pages(
            self.kind,
            lambda query: self._page(client, endpoint, key, query),
            {"pageSize": _PAGE_SIZE},
            following,
        )
        return [_model(e) for page in pages for e in page.get("models", []) if _chats(e)]

    def chat_request(
        self, endpoint: Endpoint, key: ProviderKey, body: dict[str, Any]
    ) -> ChatUpstreamRequest:
        request = google_wire.generate_request(body)
        model = quote(str(body["model"]).removeprefix("models/"), safe="")
        headers = {"x-goog-api-key": key.reveal(), "Content-Type": "application/json"}
        if body.get("stream"):
            headers["Accept"] = "text/event-stream"
            url = f"{base_url(endpoint)}/models/{model}:streamGenerateContent?alt=sse"
        else:
            url = f"{base_url(endpoint)}/models/{model}:generateContent"
        return ChatUpstreamRequest(url=url, headers=headers, body=orjson.dumps(request))

    def native_request(
        self,
        endpoint: Endpoint,
        key: ProviderKey,
        door: Door,
        body: bytes,
        headers: Mapping[str, str],
    ) -> ChatUpstreamRequest:
        raise LookupError(f"{self.kind} does not speak {door} natively")

    def response_to_openai(self, content: bytes, *, model: str) -> dict[str, Any]:
        return google_wire.response_to_openai(self._http.answer(content, "an answer"), model)

    def stream_decoder(self, *, model: str, key: ProviderKey) -> GeminiStreamDecoder:
        return GeminiStreamDecoder(model, key, self.kind)

    def error_from_response(
        self, status: int, content: bytes, headers: Mapping[str, str], key: ProviderKey
    ) -> UpstreamFailure:
        message, category, delay = google_wire.error_of(content, status)
        found = failures.failure(
            self.kind, status, message, key, category=category, headers=headers
        )
        if found.retry_after is None and delay is not None:
            found.retry_after = failures.retry_after({"retry-after": delay})
        return found

    def usage_from_response(self, body: dict[str, Any]) -> Usage | None:
        return google_wire.usage_of(body.get("usageMetadata"))

    def usage_from_stream_event(self, event: dict[str, Any]) -> Usage | None:
        return google_wire.usage_of(event.get("usageMetadata"))

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
            headers={"x-goog-api-key": key.reveal()},
            params=params,
            call="GET /models",
        )
        page = self._http.json(response, "a model list")
        # An empty last page may leave "models" out altogether.
        if not isinstance(page, dict) or not isinstance(page.get("models", []), list):
            raise self._http.unexpected("a model list without a 'models' array")

        if not all(
            isinstance(e, dict) and isinstance(e.get("name"), str) for e in page.get("models", [])
        ):
            raise self._http.unexpected("a model without a string 'name'")

        return page


def _chats(entry: dict[str, Any]) -> bool:
    methods = entry.get("supportedGenerationMethods")
    return isinstance(methods, list) and _CHAT_METHOD in methods


def _model(entry: dict[str, Any]) -> UpstreamModel:
    return UpstreamModel(id=entry["name"].removeprefix("models/"), owned_by="google", raw=entry)
