"""The OpenRouter adapter meets the provider contract, checks keys on /key, ignores keep-alives."""

from __future__ import annotations

import httpx

from shared.providers import Endpoint, adapter_for
from shared.secrets import ProviderKey
from tests.emulator import EmulatorState, provider_base_url, running_emulator
from tests.unit.provider_contract import ProviderContract, new_key


class TestOpenRouterContract(ProviderContract):
    # The emulator writes ": OPENROUTER PROCESSING" comments between stream events.
    kind = "openrouter"
    flavour = "openrouter"


async def test_the_key_is_checked_on_the_key_route_not_the_public_model_list() -> None:
    """OpenRouter lists models without a key, so only GET /key proves one."""
    key = new_key()
    state = EmulatorState(keys={key})
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        endpoint = Endpoint("openrouter", provider_base_url(base_url, "openrouter"))
        await adapter_for("openrouter").verify_key(client, endpoint, ProviderKey(key))

    assert [r.path for r in state.requests] == ["/v1/key"]


async def test_vendor_prefix_of_an_id_is_its_owner() -> None:
    key = new_key()
    state = EmulatorState(keys={key}, models=["anthropic/claude-x", "plain"], owned_by="")
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        endpoint = Endpoint("openrouter", provider_base_url(base_url, "openrouter"))
        listed = await adapter_for("openrouter").list_models(client, endpoint, ProviderKey(key))

    assert [(m.id, m.owned_by) for m in listed] == [
        ("anthropic/claude-x", "anthropic"),
        ("plain", None),
    ]
