"""How the catalog describes a model: what the provider states in its listing, overlaid
with the model data file.

The data file (``data/models.json``, bundled) holds display names, families, context
windows, modalities, tool support, prices and successors, keyed by provider kind and a
shell-style pattern on the provider's model id. An operator adds a file of their own
(``BYOM_MODEL_DATA_FILE``): its entries extend the bundled ones, and an entry with the
same provider and pattern as a bundled one replaces the fields it states. With
``BYOM_MODEL_DATA_INCLUDE_BUNDLED=false`` the operator's file stands alone.

Of the entries whose pattern matches, the most specific wins: an exact id before any
pattern, then the pattern with the most literal characters, then one for the provider
kind before one for every kind (``"*"``). A file that does not validate stops the catalog
at start with the entry and field at fault: a typo must not silently unprice a model.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.catalog.domain import ModelDetails, Price

BUNDLED_FILE = Path(__file__).with_name("data") / "models.json"

_WILDCARDS = frozenset("*?[")


class ModelDataError(ValueError):
    """The model data file cannot be used as it is."""


class _PriceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = Field(min_length=1)
    match: str = Field(min_length=1)
    display_name: str | None = None
    family: str | None = None
    context_window: int | None = Field(default=None, gt=0)
    input_modalities: list[str] | None = None
    output_modalities: list[str] | None = None
    tools: bool | None = None
    price: _PriceEntry | None = None
    successor: str | None = None


class _File(BaseModel):
    # Free-form keys (a notice, the currency, an operator's own notes) are allowed.
    model_config = ConfigDict(extra="allow")

    models: list[_Entry]


@dataclass(frozen=True, slots=True)
class _Rule:
    provider: str
    pattern: str
    fields: Mapping[str, Any]
    order: int

    def specificity(self) -> tuple[bool, int, bool, int]:
        exact = not (_WILDCARDS & set(self.pattern))
        literal = sum(1 for ch in self.pattern if ch not in _WILDCARDS)
        return (exact, literal, self.provider != "*", self.order)


class ModelData:
    """The merged data file, ready to describe models; built once at start-up."""

    def __init__(self, rules: Sequence[_Rule]) -> None:
        self._by_provider: dict[str, list[_Rule]] = {}
        for rule in rules:
            self._by_provider.setdefault(rule.provider, []).append(rule)

    @classmethod
    def load(cls, extra: Path | None = None, *, include_bundled: bool = True) -> ModelData:
        layers = ([BUNDLED_FILE] if include_bundled else []) + ([extra] if extra else [])
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for path in layers:
            for entry in _read(path):
                key = (entry.provider, entry.match)
                stated = entry.model_dump(exclude_unset=True, exclude={"provider", "match"})
                merged[key] = {**merged.get(key, {}), **stated}
        return cls(
            [
                _Rule(provider, pattern, fields, order)
                for order, ((provider, pattern), fields) in enumerate(merged.items())
            ]
        )

    def describe(
        self, provider: str, upstream_id: str, stated: ModelDetails | None = None
    ) -> ModelDetails:
        """The provider's own statement, with the best matching entry's fields on top."""
        details = stated or ModelDetails()
        rule = self._best(provider, upstream_id)
        if rule is None:
            return details

        return _overlay(details, rule.fields)

    def _best(self, provider: str, upstream_id: str) -> _Rule | None:
        candidates = [
            rule
            for rule in (*self._by_provider.get(provider, ()), *self._by_provider.get("*", ()))
            if fnmatch.fnmatchcase(upstream_id, rule.pattern)
        ]
        return max(candidates, key=_Rule.specificity, default=None)


def _read(path: Path) -> list[_Entry]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ModelDataError(f"model data file {path} cannot be read: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ModelDataError(f"model data file {path} is not JSON: {error}") from None

    try:
        return _File.model_validate(raw).models
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise ModelDataError(f"model data file {path} is invalid: {problems}") from None


def _overlay(details: ModelDetails, fields: Mapping[str, Any]) -> ModelDetails:
    changes: dict[str, Any] = {}
    for name in ("display_name", "family", "context_window", "successor"):
        if name in fields:
            changes[name] = fields[name]
    for name in ("input_modalities", "output_modalities"):
        if name in fields:
            changes[name] = tuple(fields[name] or ())
    if "tools" in fields:
        changes["supports_tools"] = fields["tools"]
    if "price" in fields:
        price = fields["price"]
        changes["price"] = None if price is None else Price(**price)
    return replace(details, **changes)
