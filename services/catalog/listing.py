"""What a provider says about each model in its own listing, as a :class:`ModelDetails`.

Providers state little and each in its own words: Anthropic a display name, Gemini a
display name and an input token limit, Bedrock a name and modalities, Groq and vLLM a
context length, OpenRouter nearly everything including prices (per token, as strings).
Whatever is missing, malformed or implausible is left unknown; the data file may still
supply it. A value here is never trusted to be a price unless the provider states one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.catalog.domain import ModelDetails, Price

_TOKENS_PER_MILLION = 1_000_000
_NAME_KEYS = ("display_name", "displayName", "modelName")
_CONTEXT_KEYS = ("context_window", "context_length", "inputTokenLimit", "max_model_len")


def stated_details(provider: str, raw: Mapping[str, Any]) -> ModelDetails:
    architecture = raw.get("architecture")
    architecture = architecture if isinstance(architecture, Mapping) else {}
    return ModelDetails(
        display_name=_display_name(provider, raw),
        context_window=_first_count(raw, _CONTEXT_KEYS),
        input_modalities=_modalities(
            raw.get("inputModalities") or architecture.get("input_modalities")
        ),
        output_modalities=_modalities(
            raw.get("outputModalities") or architecture.get("output_modalities")
        ),
        supports_tools=_tools(raw),
        price=_openrouter_price(raw) if provider == "openrouter" else None,
    )


def _display_name(provider: str, raw: Mapping[str, Any]) -> str | None:
    keys = (*_NAME_KEYS, "name") if provider == "openrouter" else _NAME_KEYS
    for key in keys:
        value = raw.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:200]
    return None


def _first_count(raw: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = raw.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _modalities(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()

    return tuple(dict.fromkeys(v.lower() for v in value if isinstance(v, str) and v))


def _tools(raw: Mapping[str, Any]) -> bool | None:
    parameters = raw.get("supported_parameters")
    if isinstance(parameters, list):
        return "tools" in parameters

    return None


def _openrouter_price(raw: Mapping[str, Any]) -> Price | None:
    pricing = raw.get("pricing")
    if not isinstance(pricing, Mapping):
        return None

    prompt = _per_million(pricing.get("prompt"))
    completion = _per_million(pricing.get("completion"))
    if prompt is None or completion is None:
        # OpenRouter's router models state -1: the price depends on where it routes.
        return None

    return Price(prompt, completion, _per_million(pricing.get("input_cache_read")))


def _per_million(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None

    try:
        per_token = float(value)
    except ValueError:
        return None

    if per_token < 0 or per_token != per_token:
        return None

    return round(per_token * _TOKENS_PER_MILLION, 6)
