"""The Groq adapter meets the provider contract, reading stream usage from x_groq."""

from __future__ import annotations

from shared.providers import Usage, adapter_for
from tests.unit.provider_contract import ProviderContract


class TestGroqContract(ProviderContract):
    # The emulator puts a stream's usage in x_groq.usage, as Groq does.
    kind = "groq"
    flavour = "groq"


def test_stream_usage_in_x_groq_is_read_for_pass_through_accounting() -> None:
    chunk = {
        "choices": [],
        "x_groq": {"id": "r", "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
    }

    assert adapter_for("groq").usage_from_stream_event(chunk) == Usage(
        input_tokens=3, output_tokens=4
    )


def test_inactive_models_are_not_listed() -> None:
    adapter = adapter_for("groq")

    assert adapter._listed({"id": "old", "active": False}) is False  # type: ignore[attr-defined]
    assert adapter._listed({"id": "new", "active": True}) is True  # type: ignore[attr-defined]
