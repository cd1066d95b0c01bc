"""The Bedrock adapter meets the provider contract, and speaks Converse as documented."""

from __future__ import annotations

import httpx
import pytest

from shared.providers import Endpoint, UnsupportedFeature, adapter_for
from shared.providers.bedrock import control_plane_url, runtime_url
from shared.providers.bedrock_wire import converse_request
from shared.secrets import ProviderKey
from tests.emulator import EmulatorState, provider_base_url, running_emulator
from tests.unit.provider_contract import PNG, WEATHER, ProviderContract, new_key


class TestBedrockContract(ProviderContract):
    kind = "bedrock"
    image_urls = False
    paged_models = False
    reports_reasoning = False


def test_region_decides_the_runtime_and_control_plane_hosts() -> None:
    """The base URL names the region; listing goes to bedrock.<region>, chat to bedrock-runtime."""
    runtime = runtime_url("eu-west-3")

    assert runtime == "https://bedrock-runtime.eu-west-3.amazonaws.com"
    assert control_plane_url(runtime) == "https://bedrock.eu-west-3.amazonaws.com"
    assert control_plane_url("https://bedrock-runtime-fips.us-east-1.amazonaws.com/") == (
        "https://bedrock-fips.us-east-1.amazonaws.com"
    )
    assert control_plane_url("http://127.0.0.1:8080/bedrock") == "http://127.0.0.1:8080/bedrock"


def test_model_ids_are_escaped_in_the_converse_path() -> None:
    """Ids with ':' are escaped; a stream asks for the event-stream content type."""
    key = new_key()
    request = adapter_for("bedrock").chat_request(
        Endpoint("bedrock", "http://127.0.0.1:9/bedrock"),
        ProviderKey(key),
        {"model": "anthropic.claude-v2:1", "messages": [], "stream": True},
    )

    assert request.url == "http://127.0.0.1:9/bedrock/model/anthropic.claude-v2%3A1/converse-stream"
    assert request.headers["Authorization"] == f"Bearer {key}"
    assert request.headers["Accept"] == "application/vnd.amazon.eventstream"


def test_request_translation_covers_system_images_tools_and_config() -> None:
    """System blocks, inline images, toolUse/toolResult and inferenceConfig map to Converse."""
    body = converse_request(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
                    ],
                },
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "t1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "t1", "content": "rain"},
            ],
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "max_completion_tokens": 30,
            "top_p": 0.5,
            "stop": ["X"],
        }
    )

    assert body["system"] == [{"text": "be brief"}]
    assert body["messages"] == [
        {"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": PNG}}}]},
        {
            "role": "assistant",
            "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {}}}],
        },
        {
            "role": "user",
            "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "rain"}]}}],
        },
    ]
    assert body["inferenceConfig"] == {"maxTokens": 30, "topP": 0.5, "stopSequences": ["X"]}
    assert body["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}
    assert body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {
        "json": WEATHER["function"]["parameters"]
    }


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"n": 3}, "n"),
        (
            {
                "tools": [WEATHER],
                "tool_choice": "none",
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "a",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{}"},
                            }
                        ],
                    }
                ],
            },
            "tool_choice",
        ),
    ],
)
def test_what_converse_cannot_do_is_refused_by_name(extra: dict[str, object], field: str) -> None:
    with pytest.raises(UnsupportedFeature) as caught:
        converse_request({"model": "m", "messages": [], **extra})

    assert caught.value.field == field


def test_tool_choice_none_without_tool_history_leaves_the_tools_out() -> None:
    """Converse has no "none": with no tool blocks yet, leaving the tools out means the same."""
    body = converse_request(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [WEATHER],
            "tool_choice": "none",
        }
    )

    assert "toolConfig" not in body


async def test_listing_takes_on_demand_models_and_pages_of_inference_profiles() -> None:
    """Provisioned-only models are left out; inference profiles are followed by nextToken."""
    key = new_key()
    profiles = ["us.vendor.model-a", "us.vendor.model-b", "eu.vendor.model-a"]
    state = EmulatorState(
        keys={key}, models=["vendor.model-a"], inference_profiles=profiles, page_size=2
    )
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        endpoint = Endpoint("bedrock", provider_base_url(base_url, "bedrock"))
        listed = await adapter_for("bedrock").list_models(client, endpoint, ProviderKey(key))

    assert [m.id for m in listed] == ["vendor.model-a", *profiles]
    assert [m.owned_by for m in listed[1:]] == ["vendor"] * 3
    assert [r.query.get("nextToken") for r in state.requests[1:]] == [None, "2"]


async def test_an_inference_profile_is_callable() -> None:
    """A profile id (with its geography prefix) is a model id for Converse."""
    key = new_key()
    state = EmulatorState(keys={key}, models=[], inference_profiles=["us.vendor.model-a"])
    adapter = adapter_for("bedrock")
    body = {"model": "us.vendor.model-a", "messages": [{"role": "user", "content": "hi"}]}
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        endpoint = Endpoint("bedrock", provider_base_url(base_url, "bedrock"))
        request = adapter.chat_request(endpoint, ProviderKey(key), body)
        response = await client.post(request.url, headers=request.headers, content=request.body)

    completion = adapter.response_to_openai(response.content, model="us.vendor.model-a")
    assert completion["choices"][0]["message"]["content"] == "Hello from us.vendor.model-a: hi"
