"""The provider emulator speaks OpenAI's wire format and obeys its state, over real HTTP."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import orjson
import pytest

from tests.emulator import EmulatorState, running_emulator
from tests.emulator.__main__ import build_parser, state_from
from tests.emulator.wire import split_evenly


def _key() -> str:
    return f"sk-test-{secrets.token_urlsafe(24)}"


def _model() -> str:
    return f"gpt-{secrets.token_hex(4)}"


def _chat(model: str, text: str = "tell me a story", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _events(response: httpx.Response) -> list[str]:
    """The data payloads of an SSE body, in order."""
    assert response.text.endswith("\n\n")
    return [frame.removeprefix("data: ") for frame in response.text.split("\n\n") if frame]


async def test_chat_completion_has_openai_shape_and_deterministic_answer() -> None:
    """A plain chat call answers a chat.completion echoing the last user message."""
    key, model = _key(), _model()
    state = EmulatorState(keys={key}, models=[model])
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        response = await client.post(
            f"{base_url}/chat/completions", headers=_auth(key), json=_chat(model, "hi there")
        )

    answer = response.json()
    assert response.status_code == 200
    assert answer["id"].startswith("chatcmpl-")
    assert answer["object"] == "chat.completion"
    assert answer["model"] == model
    assert isinstance(answer["created"], int)
    assert answer["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": f"Hello from {model}: hi there"},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    assert answer["usage"]["prompt_tokens"] == 2
    assert answer["usage"]["completion_tokens"] == 5
    assert answer["usage"]["total_tokens"] == 7


async def test_stream_with_include_usage_ends_with_usage_chunk_and_done() -> None:
    """A stream sends role, deltas, stop, usage, then [DONE]; earlier chunks carry null usage."""
    key, model = _key(), _model()
    state = EmulatorState(keys={key}, models=[model], stream_chunks=3)
    body = _chat(model, stream=True, stream_options={"include_usage": True})
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        response = await client.post(f"{base_url}/chat/completions", headers=_auth(key), json=body)

    events = _events(response)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = [c["choices"][0]["delta"]["content"] for c in chunks[1:4]]
    assert "".join(content) == f"Hello from {model}: tell me a story"
    assert chunks[4]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert chunks[5]["choices"] == []
    assert chunks[5]["usage"]["total_tokens"] == 4 + 7
    assert [c["usage"] for c in chunks[:5]] == [None] * 5


async def test_stream_without_include_usage_carries_no_usage() -> None:
    """Without stream_options.include_usage no chunk has a usage key."""
    key, model = _key(), _model()
    state = EmulatorState(keys={key}, models=[model], stream_chunks=10)
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        response = await client.post(
            f"{base_url}/chat/completions", headers=_auth(key), json=_chat(model, stream=True)
        )

    events = _events(response)
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert events[-1] == "[DONE]"
    assert len(chunks) == 1 + 10 + 1
    assert all("usage" not in c for c in chunks)


@pytest.mark.parametrize("echo", [True, False])
async def test_bad_key_gets_openai_401_echoing_the_key_only_when_asked(echo: bool) -> None:
    """A wrong key gets invalid_api_key; the key is quoted only with echo_key_in_errors."""
    bad_key, model = _key(), _model()
    state = EmulatorState(keys={_key()}, models=[model], echo_key_in_errors=echo)
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        response = await client.post(
            f"{base_url}/chat/completions", headers=_auth(bad_key), json=_chat(model)
        )

    error = response.json()["error"]
    assert response.status_code == 401
    assert error["code"] == "invalid_api_key"
    assert error["type"] == "invalid_request_error"
    assert (bad_key in error["message"]) is echo


async def test_missing_key_gets_401() -> None:
    """A request without a bearer key is refused before anything else."""
    model = _model()
    state = EmulatorState(keys={_key()}, models=[model])
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        response = await client.get(f"{base_url}/models")

    assert response.status_code == 401
    assert "didn't provide an API key" in response.json()["error"]["message"]


async def test_unknown_model_and_missing_messages_get_openai_errors() -> None:
    """An unknown model is a 404 model_not_found; a body without messages is a 400."""
    key, model = _key(), _model()
    state = EmulatorState(keys={key}, models=[model])
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        url = f"{base_url}/chat/completions"
        unknown = await client.post(url, headers=_auth(key), json=_chat(_model()))
        no_messages = await client.post(url, headers=_auth(key), json={"model": model})
        not_json = await client.post(url, headers=_auth(key), content=b"{")

    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
    assert no_messages.status_code == 400
    assert no_messages.json()["error"]["param"] == "messages"
    assert not_json.status_code == 400


async def test_models_are_paged_by_page_size_with_cursors() -> None:
    """GET /v1/models serves page_size entries with has_more, first_id and last_id."""
    key = _key()
    models = [_model() for _ in range(3)]
    state = EmulatorState(keys={key}, models=models, page_size=2)
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        first = (await client.get(f"{base_url}/models", headers=_auth(key))).json()
        second = (
            await client.get(f"{base_url}/models?after={models[1]}&limit=5", headers=_auth(key))
        ).json()
        bad = await client.get(f"{base_url}/models?after=nope", headers=_auth(key))

    assert [m["id"] for m in first["data"]] == models[:2]
    assert first["object"] == "list"
    assert (first["has_more"], first["first_id"], first["last_id"]) == (True, *models[:2])
    assert first["data"][0]["object"] == "model"
    assert [m["id"] for m in second["data"]] == models[2:]
    assert second["has_more"] is False
    assert bad.status_code == 400


async def test_injected_faults_answer_in_order_then_stop() -> None:
    """fail_next answers the next requests with OpenAI error bodies, Retry-After on a 429."""
    key = _key()
    state = EmulatorState(keys={key})
    state.fail_next(429, retry_after=3)
    state.fail_next(500, times=2)
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        answers = [await client.get(f"{base_url}/models", headers=_auth(key)) for _ in range(4)]

    assert [a.status_code for a in answers] == [429, 500, 500, 200]
    assert answers[0].headers["retry-after"] == "3"
    assert answers[0].json()["error"]["code"] == "rate_limit_exceeded"
    assert answers[1].json()["error"]["type"] == "server_error"
    assert "retry-after" not in answers[1].headers


async def test_control_routes_steer_the_same_state() -> None:
    """/_emulator/ routes list and clear requests, queue faults and replace models."""
    key, model = _key(), _model()
    state = EmulatorState(keys={key})
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        root = base_url.removesuffix("/v1")
        replaced = await client.put(f"{root}/_emulator/models", json={"models": [model]})
        queued = await client.post(f"{root}/_emulator/faults", json={"status": 503})
        refused = await client.post(f"{root}/_emulator/faults", json={"status": "bad"})
        failed = await client.get(f"{base_url}/models", headers=_auth(key))
        listed = await client.get(f"{base_url}/models", headers=_auth(key))
        recorded = (await client.get(f"{root}/_emulator/requests")).json()["requests"]
        cleared = await client.delete(f"{root}/_emulator/requests")

    assert replaced.json() == {"models": [model]}
    assert (queued.status_code, refused.status_code) == (204, 400)
    assert failed.status_code == 503
    assert [m["id"] for m in listed.json()["data"]] == [model]
    assert [r["path"] for r in recorded] == ["/v1/models", "/v1/models"]
    assert recorded[0]["headers"]["authorization"] == f"Bearer {key}"
    assert cleared.status_code == 204
    assert state.requests == []


async def test_recorded_requests_keep_method_query_body_and_json() -> None:
    """Each upstream request is recorded with what a test needs to assert on."""
    key, model = _key(), _model()
    state = EmulatorState(keys={key}, models=[model])
    body = _chat(model)
    async with running_emulator(state) as base_url, httpx.AsyncClient() as client:
        await client.get(f"{base_url}/models?limit=1", headers=_auth(key))
        await client.post(f"{base_url}/chat/completions", headers=_auth(key), json=body)

    listing, chat = state.requests
    assert (listing.method, listing.query, listing.json) == ("GET", {"limit": "1"}, None)
    assert (chat.method, chat.path, chat.json) == ("POST", "/v1/chat/completions", body)
    assert orjson.loads(chat.body) == body
    assert chat.bearer == key
    assert state.requests_to("/chat/completions") == [chat]


def test_split_evenly_keeps_the_text_and_the_piece_count() -> None:
    """Splitting an answer into n stream pieces loses nothing and yields exactly n pieces."""
    text = "Hello from gpt: a fairly long answer"

    for pieces in (1, 3, 7, 100):
        parts = split_evenly(text, pieces)
        assert "".join(parts) == text
        assert len(parts) == pieces


def test_command_line_binds_loopback_by_default() -> None:
    """The standalone emulator listens on 127.0.0.1 unless told otherwise."""
    args = build_parser().parse_args(["--key", "sk-test-a", "--models", "gpt-a, gpt-b"])
    state = state_from(args)

    assert args.host == "127.0.0.1"
    assert state.keys == {"sk-test-a"}
    assert state.models == ["gpt-a", "gpt-b"]
