"""Which adapter speaks for which provider kind.

A connection names its provider by kind. Adding a provider means writing its adapter and
adding one entry to ``_KINDS`` below; nothing registers itself at import time.

The default base URLs are the vendors' documented ones, used when a connection gives
none. Nothing in the tests sends anything there: they give the emulator's URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from shared.providers.anthropic import AnthropicAdapter
from shared.providers.base import Door, ProviderAdapter
from shared.providers.bedrock import DEFAULT_REGION, BedrockAdapter, runtime_url
from shared.providers.google import GoogleAdapter
from shared.providers.openai_compatible import OpenAICompatibleAdapter
from shared.providers.openai_family import (
    DeepSeekAdapter,
    GroqAdapter,
    OpenRouterAdapter,
    XAIAdapter,
)


@dataclass(frozen=True, slots=True)
class _Kind:
    adapter: ProviderAdapter
    # None means the admin must give a base URL: the kind is a wire format, not a vendor.
    default_base_url: str | None


_OPENAI_DOORS: Final[frozenset[Door]] = frozenset(
    {"openai-chat", "openai-responses", "openai-embeddings"}
)

_KINDS: Final[Mapping[str, _Kind]] = MappingProxyType(
    {
        "openai-compatible": _Kind(OpenAICompatibleAdapter("openai-compatible"), None),
        "openai": _Kind(
            OpenAICompatibleAdapter("openai", native_doors=_OPENAI_DOORS, renames_max_tokens=True),
            "https://api.openai.com/v1",
        ),
        "anthropic": _Kind(AnthropicAdapter(), "https://api.anthropic.com/v1"),
        "google": _Kind(GoogleAdapter(), "https://generativelanguage.googleapis.com/v1beta"),
        "xai": _Kind(XAIAdapter(), "https://api.x.ai/v1"),
        "bedrock": _Kind(BedrockAdapter(), runtime_url(DEFAULT_REGION)),
        "openrouter": _Kind(OpenRouterAdapter(), "https://openrouter.ai/api/v1"),
        "groq": _Kind(GroqAdapter(), "https://api.groq.com/openai/v1"),
        "deepseek": _Kind(DeepSeekAdapter(), "https://api.deepseek.com"),
    }
)


def adapter_for(kind: str) -> ProviderAdapter:
    """The adapter of a provider kind; LookupError names a kind nobody registered."""
    return _lookup(kind).adapter


def default_base_url(kind: str) -> str | None:
    """The vendor's documented base URL, or None when the connection must supply one."""
    return _lookup(kind).default_base_url


def known_kinds() -> tuple[str, ...]:
    return tuple(_KINDS)


def _lookup(kind: str) -> _Kind:
    registered = _KINDS.get(kind)
    if registered is None:
        known = ", ".join(_KINDS)
        raise LookupError(f"unknown provider kind {kind!r}; known kinds: {known}")

    return registered
