"""The DeepSeek adapter meets the provider contract, reading cache hits from its own fields."""

from __future__ import annotations

from shared.providers import Usage, adapter_for
from tests.unit.provider_contract import ProviderContract


class TestDeepSeekContract(ProviderContract):
    # The emulator reports cached input as prompt_cache_hit_tokens, as DeepSeek does.
    kind = "deepseek"
    flavour = "deepseek"


def test_cache_hits_count_as_cached_input() -> None:
    body = {
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 2,
            "prompt_cache_hit_tokens": 6,
            "prompt_cache_miss_tokens": 4,
        }
    }

    assert adapter_for("deepseek").usage_from_response(body) == Usage(
        input_tokens=10, output_tokens=2, cached_input_tokens=6
    )
