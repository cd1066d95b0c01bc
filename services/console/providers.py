"""The providers an admin can connect, as the Models settings page lists them.

Each entry says what the connect form asks for: every provider takes a key; Bedrock takes
a region too, and an OpenAI-compatible server its base URL. Every other provider has a
documented endpoint, which the admin may still replace (a regional or private endpoint).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from shared.providers.bedrock import DEFAULT_REGION, runtime_url

_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")


@dataclass(frozen=True, slots=True)
class Provider:
    kind: str
    label: str
    key_hint: str
    needs_base_url: bool = False
    needs_region: bool = False


PROVIDERS: Final[tuple[Provider, ...]] = (
    Provider("openai", "OpenAI", "Starts with sk-"),
    Provider("anthropic", "Anthropic", "Starts with sk-ant-"),
    Provider("google", "Google", "A Gemini API key; starts with AIza"),
    Provider("xai", "xAI", "Starts with xai-"),
    Provider("bedrock", "Amazon Bedrock", "A Bedrock API key", needs_region=True),
    Provider("openrouter", "OpenRouter", "Starts with sk-or-"),
    Provider("groq", "Groq", "Starts with gsk_"),
    Provider("deepseek", "DeepSeek", "Starts with sk-"),
    Provider(
        "openai-compatible",
        "OpenAI-compatible",
        "The server's key; leave it empty if the server takes none",
        needs_base_url=True,
    ),
)
_BY_KIND: Final = {p.kind: p for p in PROVIDERS}


def provider(kind: str) -> Provider | None:
    return _BY_KIND.get(kind)


def label(kind: str) -> str:
    found = _BY_KIND.get(kind)
    return found.label if found else kind


def endpoint(chosen: Provider, *, base_url: str, region: str) -> str | None:
    """The base URL to send keyvault: the one given, a region's, or None for the default.

    Raises ValueError with words for the admin when a region is malformed.
    """
    if base_url:
        return base_url

    if chosen.needs_region:
        region = region or DEFAULT_REGION
        if not _REGION.match(region):
            raise ValueError(f"{region!r} is not an AWS region name, such as us-east-1.")
        return runtime_url(region)

    return None


def free_name(kind: str, taken: set[str]) -> str:
    """A connection name for the provider that no active connection uses yet."""
    if kind not in taken:
        return kind

    number = 2
    while f"{kind}-{number}" in taken:
        number += 1
    return f"{kind}-{number}"
