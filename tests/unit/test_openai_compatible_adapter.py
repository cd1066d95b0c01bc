"""The OpenAI-compatible adapter against the provider emulator, over real HTTP on loopback."""

from __future__ import annotations

import secrets
import socket
from typing import Any

import httpx
import orjson
import pytest
import structlog.testing

from shared.providers import (
    Endpoint,
    KeyRejected,
    ProviderUnavailable,
    UnexpectedResponse,
    UpstreamModel,
    Usage,
    adapter_for,
)
from shared.providers.openai_compatible import OpenAICompatibleAdapter, scrub
from shared.secrets import ProviderKey
from tests.emulator import EmulatorState, running_emulator

adapter = OpenAICompatibleAdapter()


def _key() -> str:
    return f"sk-test-{secrets.token_urlsafe(24)}"


def _model_ids(count: int) -> list[str]:
    prefix = secrets.token_hex(3)
    return [f"gpt-{prefix}-{n}" for n in range(count)]


def _endpoint(base_url: str) -> Endpoint:
    return Endpoint(kind="openai-compatible", base_url=base_url)


def _leaks(text: str, key: str) -> list[str]:
    """Every 8-character run of ``key`` that appears in ``text``."""
    return [key[i : i + 8] for i in range(len(key) - 7) if key[i : i + 8] in text]


async def test_verify_key_accepts_a_key_the_provider_accepts() -> None:
    """A key the provider knows passes the check, and that exact key reached the provider."""
    key = _key()
    state = EmulatorState(keys={key})
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        await adapter.verify_key(client, _endpoint(base_url), ProviderKey(key))

    assert [r.bearer for r in state.requests] == [key]
    assert state.requests[0].path == "/v1/models"


async def test_verify_key_rejection_names_the_reason_but_never_the_key() -> None:
    """A 401 whose message echoes the key becomes KeyRejected with a scrubbed reason."""
    bad_key = _key()
    state = EmulatorState(keys={_key()}, echo_key_in_errors=True)
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        with structlog.testing.capture_logs() as logs, pytest.raises(KeyRejected) as caught:
            await adapter.verify_key(client, _endpoint(base_url), ProviderKey(bad_key))

    error = caught.value
    shown = " ".join([str(error), repr(error), error.message, repr(error.args), repr(logs)])
    assert error.status == 401
    assert "invalid_api_key" in error.message
    assert "Incorrect API key provided" in error.message
    assert _leaks(shown, bad_key) == []
    assert error.__cause__ is None
    assert [(e["event"], e["host"], e["status"]) for e in logs] == [
        ("provider_call", "127.0.0.1", 401)
    ]


async def test_verify_key_treats_403_as_rejection() -> None:
    """A 403 is a refused key too, not an outage."""
    key = _key()
    state = EmulatorState(keys={key})
    state.fail_next(403)
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        with pytest.raises(KeyRejected) as caught:
            await adapter.verify_key(client, _endpoint(base_url), ProviderKey(key))

    assert caught.value.status == 403


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_verify_key_reports_rate_limits_and_server_errors_as_unavailable(
    status: int,
) -> None:
    """429 and 5xx mean "try later", so they raise ProviderUnavailable with the status."""
    key = _key()
    state = EmulatorState(keys={key})
    state.fail_next(status, retry_after=1)
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        with pytest.raises(ProviderUnavailable) as caught:
            await adapter.verify_key(client, _endpoint(base_url), ProviderKey(key))

    assert caught.value.status == status
    assert str(status) in caught.value.message


async def test_verify_key_reports_a_timeout_as_unavailable() -> None:
    """A provider slower than the client's timeout is unavailable, not rejected."""
    key = _key()
    state = EmulatorState(keys={key}, delay=0.5)
    async with running_emulator(state) as base_url, httpx.AsyncClient(timeout=0.05) as client:
        with pytest.raises(ProviderUnavailable, match="did not answer in time"):
            await adapter.verify_key(client, _endpoint(base_url), ProviderKey(key))


async def test_verify_key_reports_a_closed_port_as_unavailable() -> None:
    """Nothing listening at the base URL raises ProviderUnavailable, not an httpx error."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async with httpx.AsyncClient() as client:
        with pytest.raises(ProviderUnavailable, match="could not be reached"):
            await adapter.verify_key(
                client, _endpoint(f"http://127.0.0.1:{port}/v1"), ProviderKey(_key())
            )


@pytest.mark.parametrize(
    "raw_body",
    [b"<html>not json</html>", b'{"data": "nope"}', b'{"data": [{"name": "no id"}]}', b"[]"],
)
async def test_verify_key_reports_a_malformed_200_as_unexpected(raw_body: bytes) -> None:
    """A 200 that is not an OpenAI model list raises UnexpectedResponse."""
    key = _key()
    state = EmulatorState(keys={key})
    state.fail_next(200, raw_body=raw_body)
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        with pytest.raises(UnexpectedResponse):
            await adapter.verify_key(client, _endpoint(base_url), ProviderKey(key))


async def test_verify_key_reports_a_404_as_unexpected() -> None:
    """A 404 on /models points at a wrong base URL, so it is neither rejection nor outage."""
    key = _key()
    state = EmulatorState(keys={key})
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        wrong = _endpoint(base_url.removesuffix("/v1") + "/v2")
        with pytest.raises(UnexpectedResponse, match="base URL") as caught:
            await adapter.verify_key(client, wrong, ProviderKey(key))

    assert caught.value.status == 404


async def test_list_models_follows_pagination_to_the_end() -> None:
    """Five models served two per page arrive complete, fetched with after=<last_id>."""
    key = _key()
    models = _model_ids(5)
    state = EmulatorState(keys={key}, models=models, page_size=2, owned_by="acme")
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        listed = await adapter.list_models(client, _endpoint(base_url + "/"), ProviderKey(key))

    assert [m.id for m in listed] == models
    assert [r.query.get("after") for r in state.requests] == [None, models[1], models[3]]
    assert {r.bearer for r in state.requests} == {key}


async def test_list_models_keeps_owner_created_and_raw_entry() -> None:
    """Each model carries owned_by, created and the provider's raw entry."""
    key = _key()
    (model_id,) = _model_ids(1)
    state = EmulatorState(keys={key}, models=[model_id], owned_by="acme", created=1_234)
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        listed = await adapter.list_models(client, _endpoint(base_url), ProviderKey(key))

    assert listed == [UpstreamModel(id=model_id, owned_by="acme", created=1_234)]
    assert listed[0].raw["object"] == "model"


async def test_list_models_refuses_a_provider_that_repeats_a_page() -> None:
    """A provider that keeps answering the same cursor raises instead of looping forever."""
    key = _key()
    looping = orjson.dumps(
        {"object": "list", "data": [{"id": "m"}], "has_more": True, "last_id": "m"}
    )
    state = EmulatorState(keys={key})
    state.fail_next(200, times=5, raw_body=looping)
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        with pytest.raises(UnexpectedResponse, match="repeated"):
            await adapter.list_models(client, _endpoint(base_url), ProviderKey(key))

    assert len(state.requests) == 2


async def test_chat_request_reaches_the_provider_with_the_key_and_body() -> None:
    """The built request is a valid OpenAI chat call that the emulator accepts as sent."""
    key = _key()
    (model,) = _model_ids(1)
    body = {"model": model, "messages": [{"role": "user", "content": "ping"}], "stream": True}
    request = adapter.chat_request(_endpoint("http://127.0.0.1:1/v1/"), ProviderKey(key), body)

    assert request.url == "http://127.0.0.1:1/v1/chat/completions"
    assert request.headers == {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
    }
    assert orjson.loads(request.body) == body

    state = EmulatorState(keys={key}, models=[model])
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        request = adapter.chat_request(_endpoint(base_url), ProviderKey(key), body)
        response = await client.post(request.url, headers=request.headers, content=request.body)

    assert response.status_code == 200
    assert state.requests[0].bearer == key
    assert state.requests[0].json == body


def test_chat_request_asks_for_json_when_not_streaming() -> None:
    """A non-streamed chat body gets no SSE Accept header."""
    request = adapter.chat_request(
        _endpoint("http://127.0.0.1:1/v1"), ProviderKey(_key()), {"model": "m", "messages": []}
    )

    assert "Accept" not in request.headers


async def test_usage_is_read_from_a_real_completion_and_its_stream() -> None:
    """Usage of the emulator's answer and of its final stream chunk match its counts."""
    key = _key()
    (model,) = _model_ids(1)
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "a b c"}]}
    state = EmulatorState(keys={key}, models=[model])
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        plain = adapter.chat_request(_endpoint(base_url), ProviderKey(key), body)
        answer = (await client.post(plain.url, headers=plain.headers, content=plain.body)).json()
        streamed = adapter.chat_request(
            _endpoint(base_url),
            ProviderKey(key),
            {**body, "stream": True, "stream_options": {"include_usage": True}},
        )
        response = await client.post(streamed.url, headers=streamed.headers, content=streamed.body)

    events = [
        orjson.loads(line.removeprefix("data: "))
        for line in response.text.split("\n\n")
        if line.startswith("data: {")
    ]
    stream_usages = [adapter.usage_from_stream_event(e) for e in events]
    expected = Usage(input_tokens=3, output_tokens=answer["usage"]["completion_tokens"])
    assert adapter.usage_from_response(answer) == expected
    assert stream_usages[-1] == expected
    assert set(stream_usages[:-1]) == {None}


def test_usage_reads_cached_and_reasoning_tokens() -> None:
    """The detail objects fill cached_input_tokens and reasoning_tokens."""
    body = {
        "usage": {
            "prompt_tokens": 120,
            "completion_tokens": 30,
            "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": 100},
            "completion_tokens_details": {"reasoning_tokens": 12},
        }
    }

    assert adapter.usage_from_response(body) == Usage(
        input_tokens=120, output_tokens=30, cached_input_tokens=100, reasoning_tokens=12
    )


@pytest.mark.parametrize(
    "body", [{}, {"usage": None}, {"choices": []}, {"usage": "lots"}], ids=repr
)
def test_usage_is_none_when_absent_or_null(body: dict[str, Any]) -> None:
    """No usage object means no usage, not a zero count."""
    assert adapter.usage_from_response(body) is None
    assert adapter.usage_from_stream_event(body) is None


def test_usage_counts_missing_or_null_fields_as_zero() -> None:
    """Compatible servers that omit details or send null counts still yield a Usage."""
    body = {"usage": {"prompt_tokens": 7, "completion_tokens": None, "prompt_tokens_details": None}}

    assert adapter.usage_from_stream_event(body) == Usage(input_tokens=7)


def test_scrub_removes_the_key_its_fragments_and_key_like_tokens() -> None:
    """Whole keys, 8+ character runs of them and other sk- tokens are all redacted."""
    key = _key()
    other = _key()
    text = f"bad {key}; partial {key[5:15]}; short {key[:4]}; other {other}; masked sk-ab***yz12"

    scrubbed = scrub(text, key)

    assert _leaks(scrubbed, key) == []
    assert _leaks(scrubbed, other) == []
    assert "sk-ab***yz12" not in scrubbed
    assert scrubbed.startswith("bad [redacted]; partial [redacted]; short ")


def test_registry_maps_openai_kinds_to_this_adapter() -> None:
    """Both OpenAI kinds use the OpenAI-compatible adapter; unknown kinds are named."""
    from shared.providers.registry import default_base_url, known_kinds

    assert {"openai", "openai-compatible"} <= set(known_kinds())
    assert isinstance(adapter_for("openai"), OpenAICompatibleAdapter)
    assert adapter_for("openai").kind == "openai"
    assert default_base_url("openai") == "https://api.openai.com/v1"
    assert default_base_url("openai-compatible") is None
    with pytest.raises(LookupError, match="no-such-kind"):
        adapter_for("no-such-kind")
