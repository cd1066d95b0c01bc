"""The xAI adapter meets the provider contract: OpenAI's format at api.x.ai."""

from __future__ import annotations

from shared.providers import adapter_for
from shared.providers.registry import default_base_url
from tests.unit.provider_contract import ProviderContract


class TestXAIContract(ProviderContract):
    kind = "xai"


def test_xai_lives_at_its_documented_url_and_speaks_responses_natively() -> None:
    assert default_base_url("xai") == "https://api.x.ai/v1"
    assert "openai-responses" in adapter_for("xai").native_doors
