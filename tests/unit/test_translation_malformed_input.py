"""Malformed Messages requests are refused naming the field, never crash the translation."""

from __future__ import annotations

from typing import Any

import pytest

from shared.providers import UnsupportedFeature
from shared.translation import anthropic_to_openai_request

USER: list[dict[str, Any]] = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": USER, "stop_sequences": 5}, "stop_sequences"),
        # A string is not a list of sequences: it must not become one per character.
        ({"messages": USER, "stop_sequences": "END"}, "stop_sequences"),
    ],
)
def test_a_malformed_field_is_an_unsupported_feature_naming_it(
    body: dict[str, Any], field: str
) -> None:
    """What the gateway cannot read is a 400 naming the field, not a 500 from a KeyError or TypeError."""
    with pytest.raises(UnsupportedFeature) as refused:
        anthropic_to_openai_request({"model": "m", "max_tokens": 5, **body})

    assert refused.value.field.startswith(field)


def test_a_system_message_without_content_is_read_as_empty() -> None:
    """A system-role message with no content does not crash the translation."""
    chat = anthropic_to_openai_request(
        {"model": "m", "max_tokens": 5, "messages": [{"role": "system"}, *USER]}
    )

    assert chat["messages"][0] == {"role": "system", "content": ""}
