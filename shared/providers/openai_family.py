"""Vendors that speak OpenAI's wire format, each with its own quirks.

| vendor | base URL | quirk handled here |
|---|---|---|
| xAI | ``https://api.x.ai/v1`` | none beyond OpenAI's format; also serves ``/responses`` |
| OpenRouter | ``https://openrouter.ai/api/v1`` | ``GET /models`` is public, so the key is checked with ``GET /key``; ids are ``vendor/model`` |
| Groq | ``https://api.groq.com/openai/v1`` | stream usage arrives in ``x_groq.usage``; deactivated models are listed with ``active: false`` |
| DeepSeek | ``https://api.deepseek.com`` | cache hits are counted in ``prompt_cache_hit_tokens`` |

None of them pages ``GET /models``; the OpenAI adapter's pagination simply ends after
the first page when ``has_more`` is absent.
"""

from __future__ import annotations

from typing import Any

import httpx

from shared.providers.base import Endpoint, UpstreamModel
from shared.providers.openai_compatible import (
    OpenAICompatibleAdapter,
    auth_headers,
    base_url,
    count,
)
from shared.secrets import ProviderKey


class XAIAdapter(OpenAICompatibleAdapter):
    def __init__(self) -> None:
        super().__init__(
            "xai", native_doors=frozenset({"openai-chat", "openai-responses", "openai-embeddings"})
        )


class OpenRouterAdapter(OpenAICompatibleAdapter):
    """OpenRouter: the model list answers without a key, so ``GET /key`` checks it."""

    def __init__(self) -> None:
        super().__init__("openrouter", native_doors=frozenset({"openai-chat"}))

    async def verify_key(
        self, client: httpx.AsyncClient, endpoint: Endpoint, key: ProviderKey
    ) -> None:
        response = await self._http.get(
            client, f"{base_url(endpoint)}/key", key=key, headers=auth_headers(key), call="GET /key"
        )
        payload = self._http.json(response, "a key description")
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
            raise self._http.unexpected("a key description without a 'data' object")

    def _model(self, entry: dict[str, Any]) -> UpstreamModel:
        # OpenRouter lists no owner; the id's prefix is the vendor ("anthropic/claude-…").
        model = super()._model(entry)
        vendor, slash, _ = model.id.partition("/")
        return UpstreamModel(
            id=model.id,
            owned_by=model.owned_by or (vendor if slash else None),
            created=model.created,
            raw=entry,
        )


class GroqAdapter(OpenAICompatibleAdapter):
    """Groq: usage of a stream in ``x_groq.usage``; inactive models left out of the list.

    Groq serves chat, not embeddings: an embeddings call is refused before it is sent.
    """

    def __init__(self) -> None:
        super().__init__("groq", native_doors=frozenset({"openai-chat"}))

    def normalize(self, payload: dict[str, Any]) -> dict[str, Any]:
        extension = payload.get("x_groq")
        usage = extension.get("usage") if isinstance(extension, dict) else None
        if isinstance(usage, dict) and not payload.get("usage"):
            return {**payload, "usage": usage}

        return payload

    def _listed(self, entry: dict[str, Any]) -> bool:
        return entry.get("active") is not False


class DeepSeekAdapter(OpenAICompatibleAdapter):
    """DeepSeek: cached input in ``prompt_cache_hit_tokens``, moved to OpenAI's field.

    DeepSeek serves chat, not embeddings: an embeddings call is refused before it is sent.
    """

    def __init__(self) -> None:
        super().__init__("deepseek", native_doors=frozenset({"openai-chat"}))

    def normalize(self, payload: dict[str, Any]) -> dict[str, Any]:
        usage = payload.get("usage")
        if not isinstance(usage, dict) or "prompt_cache_hit_tokens" not in usage:
            return payload

        details = usage.get("prompt_tokens_details")
        details = dict(details) if isinstance(details, dict) else {}
        details.setdefault("cached_tokens", count(usage, "prompt_cache_hit_tokens"))
        return {**payload, "usage": {**usage, "prompt_tokens_details": details}}
