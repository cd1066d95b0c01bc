"""How the catalog describes models: the bundled data file, an operator's file over it,
the most specific pattern winning, and what providers state in their listings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest

from services.catalog import api
from services.catalog.domain import CAPABILITIES, ModelDetails, Price
from services.catalog.listing import stated_details
from services.catalog.model_data import BUNDLED_FILE, ModelData, ModelDataError
from services.catalog.views import InvalidCursor, decode_cursor, encode_cursor


def write(tmp_path: Path, entries: list[dict[str, object]]) -> Path:
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"models": entries}))
    return path


def test_the_bundled_file_prices_well_known_models_and_says_to_check_them() -> None:
    """The bundled file loads, prices the main providers' models, and warns operators."""
    data = ModelData.load()

    gpt = data.describe("openai", "gpt-4o-2024-08-06")
    claude = data.describe("anthropic", "claude-sonnet-4-5-20250929")
    mini = data.describe("openai", "gpt-4o-mini")

    assert gpt.price is not None and gpt.price.output > gpt.price.input > 0
    assert gpt.display_name == "GPT-4o"
    assert claude.price is not None and claude.context_window == 200000
    assert mini.display_name == "GPT-4o mini"
    assert "must check" in json.loads(BUNDLED_FILE.read_text())["notice"]
    assert data.describe("openai-compatible", "my-llama") == ModelDetails()


def test_the_most_specific_pattern_wins(tmp_path: Path) -> None:
    """An exact id beats a pattern, a longer pattern a shorter one, a kind beats "*"."""
    extra = write(
        tmp_path,
        [
            {"provider": "*", "match": "gpt-*", "family": "any-kind"},
            {"provider": "openai", "match": "gpt-*", "family": "short"},
            {"provider": "openai", "match": "gpt-4o*", "family": "long"},
            {"provider": "openai", "match": "gpt-4o-mini", "family": "exact"},
        ],
    )

    data = ModelData.load(extra, include_bundled=False)

    assert data.describe("openai", "gpt-4o-mini").family == "exact"
    assert data.describe("openai", "gpt-4o-2024").family == "long"
    assert data.describe("openai", "gpt-3").family == "short"
    assert data.describe("groq", "gpt-3").family == "any-kind"
    assert data.describe("groq", "llama") == ModelDetails()


def test_an_operator_file_extends_and_overrides_field_by_field(tmp_path: Path) -> None:
    """Same provider and pattern: the operator's fields win, the others stay; new entries add."""
    extra = write(
        tmp_path,
        [
            {"provider": "openai", "match": "gpt-4o", "price": {"input": 1.0, "output": 4.0}},
            {"provider": "openai-compatible", "match": "*", "price": {"input": 0, "output": 0}},
            {"provider": "openai-compatible", "match": "llama-*", "family": "llama"},
            {"provider": "*", "match": "special-model", "display_name": "Special"},
        ],
    )

    data = ModelData.load(extra)

    gpt = data.describe("openai", "gpt-4o")
    assert gpt.price == Price(1.0, 4.0)
    assert gpt.display_name == "GPT-4o"
    assert data.describe("openai-compatible", "mistral").price == Price(0, 0)
    llama = data.describe("openai-compatible", "llama-3")
    assert (llama.family, llama.price) == ("llama", None)
    assert data.describe("groq", "special-model").display_name == "Special"


def test_an_operator_file_can_stand_alone(tmp_path: Path) -> None:
    """Without the bundled file only the operator's entries describe models."""
    extra = write(tmp_path, [{"provider": "openai", "match": "gpt-*", "family": "mine"}])

    data = ModelData.load(extra, include_bundled=False)

    assert data.describe("openai", "gpt-4o") == ModelDetails(family="mine")


def test_an_entry_can_unprice_a_model_and_name_a_successor(tmp_path: Path) -> None:
    """A null price is "unknown"; a successor is kept as the upstream id it names."""
    extra = write(
        tmp_path,
        [{"provider": "openai", "match": "gpt-4o", "price": None, "successor": "gpt-5"}],
    )

    described = ModelData.load(extra).describe("openai", "gpt-4o")

    assert described.price is None
    assert described.successor == "gpt-5"


@pytest.mark.parametrize(
    ("content", "fault"),
    [
        ('{"models": [{"provider": "openai", "match": "x", "prise": 1}]}', "prise"),
        (
            '{"models": [{"provider": "openai", "match": "x", "price": {"input": -1, "output": 1}}]}',
            "input",
        ),
        ("not json", "not JSON"),
        ('{"entries": []}', "models"),
    ],
    ids=["misspelt-field", "negative-price", "not-json", "no-models"],
)
def test_a_broken_operator_file_is_refused_naming_the_fault(
    tmp_path: Path, content: str, fault: str
) -> None:
    """A file that does not validate stops the load with what is wrong, not silently."""
    path = tmp_path / "models.json"
    path.write_text(content)

    with pytest.raises(ModelDataError, match=fault):
        ModelData.load(path)


def test_a_missing_operator_file_is_refused() -> None:
    """A path that names no file is an error, not an empty extension."""
    with pytest.raises(ModelDataError, match="cannot be read"):
        ModelData.load(Path("/nonexistent/models.json"))


def test_provider_statements_are_read_and_the_data_file_goes_on_top() -> None:
    """OpenRouter's prices per token become per million; the data file's fields win."""
    raw = {
        "id": "vendor/model",
        "name": "Vendor: Model",
        "context_length": 32768,
        "architecture": {"input_modalities": ["text", "image"], "output_modalities": ["text"]},
        "supported_parameters": ["tools", "temperature"],
        "pricing": {
            "prompt": "0.000003",
            "completion": "0.000015",
            "input_cache_read": "0.0000003",
        },
    }

    stated = stated_details("openrouter", raw)

    assert stated == ModelDetails(
        display_name="Vendor: Model",
        context_window=32768,
        input_modalities=("text", "image"),
        output_modalities=("text",),
        supports_tools=True,
        price=Price(3.0, 15.0, 0.3),
    )
    assert stated.capabilities == ("tools", "vision")
    assert (
        stated_details("openrouter", {"pricing": {"prompt": "-1", "completion": "-1"}}).price
        is None
    )
    # Only OpenRouter's listing is read for prices, and "name" only from OpenRouter.
    assert (
        stated_details("openai-compatible", {"name": "x", "pricing": raw["pricing"]})
        == ModelDetails()
    )
    gemini = stated_details("google", {"displayName": "Gemini X", "inputTokenLimit": 1048576})
    assert (gemini.display_name, gemini.context_window) == ("Gemini X", 1048576)


def test_cursors_round_trip_and_foreign_ones_are_refused() -> None:
    """A cursor the API handed out decodes to its position; anything else is refused."""
    assert decode_cursor(encode_cursor("conn/gpt-4o", "id-1")) == ("conn/gpt-4o", "id-1")
    for bad in ("", "!!!", encode_cursor("a", "b")[:-3], "WzEsMl0"):
        with pytest.raises(InvalidCursor):
            decode_cursor(bad)


def test_the_api_filters_on_the_capabilities_the_domain_derives() -> None:
    """The read API's capability choices are exactly those the catalog computes."""
    assert get_args(api.Capability) == CAPABILITIES
