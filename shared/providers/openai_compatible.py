"""Adapter for OpenAI's REST format and the servers that speak it (vLLM, Ollama, and others).

``Endpoint.base_url`` carries the version path (``https://host/v1``); every path here is
relative to it. The key travels only in the ``Authorization`` header; a server that needs
no key (a local vLLM or Ollama) is connected without one and gets no such header, and one
that ignores keys takes whatever the admin pasted. Whatever a provider says back is
scrubbed of the key before it reaches an exception message, because providers echo a
rejected key in their error text.

OpenAI chat is the hub format, so a chat body goes upstream as given and answers come back
as they are; only the vendors' quirks in usage reporting are normalised (see
:mod:`shared.providers.openai_family`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypeGuard

import httpx
import orjson

from shared.providers import failures
from shared.providers.base import (
    ChatUpstreamRequest,
    Door,
    Endpoint,
    UpstreamFailure,
    UpstreamModel,
    Usage,
)
from shared.providers.http import Page, ProviderHttp, Query, follow_pages
from shared.providers.scrubbing import scrub
from shared.providers.sse import SSEParser
from shared.secrets import ProviderKey

__all__ = ["OpenAICompatibleAdapter", "OpenAIStreamDecoder", "scrub"]

_VERIFY_LIMIT: Final = 1
_PAGE_LIMIT: Final = 100
_DOOR_PATHS: Final[Mapping[str, str]] = {
    "openai-chat": "/chat/completions",
    "openai-responses": "/responses",
    "openai-embeddings": "/embeddings",
}
_CHAT_DOORS: Final[frozenset[Door]] = frozenset({"openai-chat", "openai-embeddings"})


class OpenAICompatibleAdapter:
    """Checks keys, lists models and builds chat requests in OpenAI's wire format."""

    def __init__(
        self,
        kind: str = "openai-compatible",
        *,
        native_doors: frozenset[Door] = _CHAT_DOORS,
        renames_max_tokens: bool = False,
    ) -> None:
        self.kind = kind
        self.native_doors = native_doors
        # OpenAI's reasoning models refuse the older max_tokens; the newer field means the
        # same for every OpenAI model, while many compatible servers know only the older.
        self._renames_max_tokens = renames_max_tokens
        self._http = ProviderHttp(kind, read_error_fields)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r})"

    async def verify_key(
        self, client: httpx.AsyncClient, endpoint: Endpoint, key: ProviderKey
    ) -> None:
        """Return if ``GET /models`` accepts the key; raise a ProviderError otherwise."""
        await self._model_page(client, endpoint, key, {"limit": _VERIFY_LIMIT})

    async def list_models(
        self, client: httpx.AsyncClient, endpoint: Endpoint, key: ProviderKey
    ) -> list[UpstreamModel]:
        """Every model of ``GET /models``, following ``has_more``/``last_id`` pagination."""

        def following(page: Page) -> Query | None:
            if not page.get("has_more"):
                return None

            return {"limit": _PAGE_LIMIT, "after": self._next_cursor(page)}

        pages = await follow_pages(
            self.kind,
            lambda query: self._model_page(client, endpoint, key, query),
            {"limit": _PAGE_LIMIT},
            following,
        )
        return [self._model(e) for page in pages for e in page["data"] if self._listed(e)]

    def chat_request(
        self, endpoint: Endpoint, key: ProviderKey, body: dict[str, Any]
    ) -> ChatUpstreamRequest:
        """``POST /chat/completions`` with the body as given; streams ask for SSE."""
        if self._renames_max_tokens and "max_completion_tokens" not in body:
            body = {
                ("max_completion_tokens" if name == "max_tokens" else name): value
                for name, value in body.items()
            }
        headers = {**auth_headers(key), "Content-Type": "application/json"}
        if body.get("stream"):
            headers["Accept"] = "text/event-stream"

        return ChatUpstreamRequest(
            url=f"{base_url(endpoint)}/chat/completions",
            headers=headers,
            body=orjson.dumps(body),
        )

    def native_request(
        self,
        endpoint: Endpoint,
        key: ProviderKey,
        door: Door,
        body: bytes,
        headers: Mapping[str, str],
    ) -> ChatUpstreamRequest:
        """The client's body, untouched, to the door's path; no client header is carried."""
        if door not in self.native_doors:
            raise LookupError(f"{self.kind} does not speak {door} natively")

        return ChatUpstreamRequest(
            url=f"{base_url(endpoint)}{_DOOR_PATHS[door]}",
            headers={**auth_headers(key), "Content-Type": "application/json"},
            body=body,
        )

    def response_to_openai(self, content: bytes, *, model: str) -> dict[str, Any]:
        """The answer as it is (OpenAI is the hub), its usage in OpenAI's standard fields."""
        payload = self._http.answer(content, "a chat answer", needs=("choices", list))
        payload.setdefault("model", model)
        return self.normalize(payload)

    def stream_decoder(self, *, model: str, key: ProviderKey) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder(self, key)

    def error_from_response(
        self, status: int, content: bytes, headers: Mapping[str, str], key: ProviderKey
    ) -> UpstreamFailure:
        _, message = read_error_fields(content)
        return failures.failure(self.kind, status, message, key, headers=headers)

    def usage_from_response(self, body: dict[str, Any]) -> Usage | None:
        return usage_of(self.normalize(body))

    def usage_from_stream_event(self, event: dict[str, Any]) -> Usage | None:
        # Only the last chunk of a stream asked with include_usage carries usage;
        # every other chunk has "usage": null.
        return usage_of(self.normalize(event))

    def normalize(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A vendor's answer or chunk with its usage where OpenAI puts it (a hook for vendors)."""
        return payload

    def _listed(self, entry: dict[str, Any]) -> bool:
        """Whether a listed model is one a member could call (a hook for vendors)."""
        return True

    async def _model_page(
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
            headers=auth_headers(key),
            params=params,
            call="GET /models",
        )
        return self._parse_page(self._http.json(response, "a model list"))

    def _parse_page(self, payload: object) -> dict[str, Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
            raise self._http.unexpected("a model list without a 'data' array")

        entries = payload["data"]
        if not all(isinstance(e, dict) and isinstance(e.get("id"), str) for e in entries):
            raise self._http.unexpected("a model without a string 'id'")

        has_more = payload.get("has_more")
        if has_more is not None and not isinstance(has_more, bool):
            raise self._http.unexpected("a non-boolean 'has_more'")

        return payload

    def _next_cursor(self, payload: dict[str, Any]) -> str:
        # OpenAI names the cursor last_id; servers that omit it still page by the last entry.
        last_id = payload.get("last_id")
        if isinstance(last_id, str) and last_id:
            return last_id

        if not payload["data"]:
            raise self._http.unexpected("'has_more' on an empty page with no 'last_id'")

        cursor: str = payload["data"][-1]["id"]
        return cursor

    def _model(self, entry: dict[str, Any]) -> UpstreamModel:
        owned_by = entry.get("owned_by")
        created = entry.get("created")
        return UpstreamModel(
            id=entry["id"],
            owned_by=owned_by if isinstance(owned_by, str) else None,
            created=created if is_count(created) else None,
            raw=entry,
        )


class OpenAIStreamDecoder:
    """An OpenAI-style SSE stream as chunks: each ``data:`` object is already a chunk."""

    def __init__(self, adapter: OpenAICompatibleAdapter, key: ProviderKey) -> None:
        self._adapter = adapter
        self._key = key
        self._parser = SSEParser()
        self._usage: Usage | None = None
        self._failure: UpstreamFailure | None = None
        self._done = False
        self._finished = False

    @property
    def usage(self) -> Usage | None:
        return self._usage

    @property
    def failure(self) -> UpstreamFailure | None:
        return self._failure

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return self._take(self._parser.feed(data))

    def close(self) -> list[dict[str, Any]]:
        chunks = self._take(self._parser.close())
        # Some compatible servers omit [DONE]; a finish reason still says the answer is whole.
        if self._failure is None and not (self._done or self._finished):
            self._failure = failures.stream_ended_early(self._adapter.kind)
        return chunks

    def _take(self, events: list[Any]) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        for event in events:
            if self._failure is not None or self._done:
                break

            if event.data.strip() == "[DONE]":
                self._done = True
                break

            chunk = self._chunk(event.data)
            if chunk is not None:
                chunks.append(chunk)
        return chunks

    def _chunk(self, data: str) -> dict[str, Any] | None:
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._failure = UpstreamFailure(
                f"{self._adapter.kind} sent a stream event that is not JSON",
                provider=self._adapter.kind,
                status=502,
                category="bad_response",
            )
            return None

        if not isinstance(payload, dict):
            return None

        if payload.get("error") is not None:
            self._failure = self._stream_error(payload["error"])
            return None

        chunk = self._adapter.normalize(payload)
        usage = usage_of(chunk)
        if usage is not None:
            self._usage = usage if self._usage is None else self._usage.merged(usage)
        choices = chunk.get("choices")
        if isinstance(choices, list) and any(
            isinstance(c, dict) and c.get("finish_reason") for c in choices
        ):
            self._finished = True
        return chunk

    def _stream_error(self, error: object) -> UpstreamFailure:
        # OpenAI sends {"error": {...}} as an event when a stream fails midway; OpenRouter
        # puts the upstream status in "code".
        message, status = "the provider failed during the stream", 502
        if isinstance(error, dict):
            if isinstance(error.get("message"), str):
                message = error["message"]
            code = error.get("code")
            if isinstance(code, int) and 400 <= code <= 599:
                status = code
        elif isinstance(error, str):
            message = error
        return failures.failure(self._adapter.kind, status, message, self._key)


def base_url(endpoint: Endpoint) -> str:
    return endpoint.base_url.rstrip("/")


def auth_headers(key: ProviderKey) -> dict[str, str]:
    """The bearer header, or none at all for a server connected without a key."""
    return {"Authorization": f"Bearer {key.reveal()}"} if key else {}


def read_error_fields(content: bytes) -> tuple[str | None, str]:
    """The code and message of an OpenAI error body, or the raw text of any other body."""
    text = content.decode("utf-8", errors="replace")
    try:
        payload = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None, text

    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        message = error.get("message")
        return (str(code) if code else None, message if isinstance(message, str) else text)

    # Some compatible servers put a bare string in "error" or, like FastAPI, in "detail".
    for field in ("error", "detail", "message"):
        value = payload.get(field) if isinstance(payload, dict) else None
        if isinstance(value, str):
            return None, value

    return None, text


def usage_of(payload: dict[str, Any]) -> Usage | None:
    """Usage in OpenAI's chat fields, or in its Responses fields (also inside ``response``)."""
    usage = payload.get("usage")
    if usage is None and isinstance(payload.get("response"), dict):
        usage = payload["response"].get("usage")
    if not isinstance(usage, dict):
        return None

    if "input_tokens" in usage and "prompt_tokens" not in usage:
        return Usage(
            input_tokens=count(usage, "input_tokens"),
            output_tokens=count(usage, "output_tokens"),
            cached_input_tokens=count(usage.get("input_tokens_details"), "cached_tokens"),
            reasoning_tokens=count(usage.get("output_tokens_details"), "reasoning_tokens"),
        )

    return Usage(
        input_tokens=count(usage, "prompt_tokens"),
        output_tokens=count(usage, "completion_tokens"),
        cached_input_tokens=count(usage.get("prompt_tokens_details"), "cached_tokens"),
        reasoning_tokens=count(usage.get("completion_tokens_details"), "reasoning_tokens"),
    )


def count(mapping: object, name: str) -> int:
    # Compatible servers omit detail objects or send null counts; both mean none reported.
    value = mapping.get(name) if isinstance(mapping, dict) else None
    return value if is_count(value) else 0


def is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
