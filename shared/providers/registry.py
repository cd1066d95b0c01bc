"""Which adapter speaks for which provider kind.

A connection names its provider by kind. Adding a provider means writing its adapter and
adding one entry to ``_KINDS`` below; nothing registers itself at import time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from shared.providers.base import ProviderAdapter
from shared.providers.openai_compatible import OpenAICompatibleAdapter


@dataclass(frozen=True, slots=True)
class _Kind:
    adapter: ProviderAdapter
    # None means the admin must give a base URL: the kind is a wire format, not a vendor.
    default_base_url: str | None


_KINDS: Final[Mapping[str, _Kind]] = MappingProxyType(
    {
        "openai-compatible": _Kind(OpenAICompatibleAdapter("openai-compatible"), None),
        "openai": _Kind(OpenAICompatibleAdapter("openai"), "https://api.openai.com/v1"),
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
