"""OpenAI's documented JSON shapes, built from plain values.

Answers are deterministic: the same messages and model give the same content and token
counts, so tests can state exact expectations. Tokens are counted as whitespace-separated
words, which is not how a real tokenizer counts, but is stable and easy to predict.
Scenario answers (tool calls, image echoes, …) are planned in :mod:`scenarios` and
written here in OpenAI's format, with the vendors' quirks the state asks for.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson

from tests.emulator.scenarios import Answer, Conversation, Tool, halves, hello, split_evenly

__all__ = ["split_evenly"]

_ERROR_MESSAGES = {
    400: ("Bad request.", "invalid_request_error", None),
    401: ("Unauthorized.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to sample from this model.", "invalid_request_error", None),
    404: ("Not found.", "invalid_request_error", None),
    429: (
        "Rate limit reached for requests. Please try again in a moment.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


def error_body(
    message: str, error_type: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def fault_body(status: int) -> dict[str, Any]:
    """The error body OpenAI sends with ``status``, or a generic one for other statuses."""
    message, error_type, code = _ERROR_MESSAGES.get(
        status, (f"Emulated failure {status}.", "server_error", None)
    )
    return error_body(message, error_type, code=code)


def invalid_key_body(key: str | None, *, echo_key: bool) -> dict[str, Any]:
    if key is None:
        return error_body(
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "invalid_request_error",
        )

    # Real providers quote the rejected key (OpenAI masks part of it, others do not);
    # echoing it whole is the worst case the gateway must scrub.
    provided = f": {key}" if echo_key else ""
    return error_body(
        f"Incorrect API key provided{provided}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        code="invalid_api_key",
    )


def model_object(model_id: str, *, created: int, owned_by: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}


def model_page(entries: list[dict[str, Any]], *, has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": entries,
        "has_more": has_more,
        "first_id": entries[0]["id"] if entries else None,
        "last_id": entries[-1]["id"] if entries else None,
    }


def answer_for(model: str, messages: list[Any]) -> str:
    """``"Hello from <model>: <start of the last user message>"``."""
    user_texts = [_text_of(m) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return hello(model, user_texts[-1] if user_texts else "")


def usage_for(messages: list[Any], answer: str) -> dict[str, Any]:
    prompt_tokens = sum(len(_text_of(m).split()) for m in messages if isinstance(m, dict))
    completion_tokens = len(answer.split())
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def completion(model: str, answer: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": usage,
    }


def stream_chunks(
    model: str, answer: str, usage: dict[str, Any], *, pieces: int, include_usage: bool
) -> Iterator[dict[str, Any]]:
    """The chunks of a streamed answer: role, ``pieces`` content deltas, stop, then usage."""
    chunk_id = completion_id()
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        # With include_usage, OpenAI sends "usage": null on every chunk but the last.
        if include_usage:
            body["usage"] = None
        return body

    yield chunk({"role": "assistant", "content": ""})
    for piece in split_evenly(answer, pieces):
        yield chunk({"content": piece})
    yield chunk({}, finish_reason="stop")
    if include_usage:
        yield {**chunk({}), "choices": [], "usage": usage}


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content

    # Content may be a list of parts; only text parts count.
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )

    return ""


def conversation(model: str, payload: dict[str, Any]) -> Conversation:
    """What the emulator reads of an OpenAI chat request."""
    messages = [m for m in payload.get("messages") or [] if isinstance(m, dict)]
    found = Conversation(model=model, texts=[_text_of(m) for m in messages])
    users = [m for m in messages if m.get("role") == "user"]
    found.last_user_text = _text_of(users[-1]) if users else ""
    for message in messages:
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "image_url":
                url = (part.get("image_url") or {}).get("url", "")
                found.images.append(_describe_image(url))
    for tool in payload.get("tools") or []:
        function = tool.get("function") or {}
        found.tools.append(Tool(function.get("name", ""), function.get("parameters") or {}))
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        found.tool_results.insert(0, _text_of(message))
    return found


def _describe_image(url: str) -> str:
    if url.startswith("data:"):
        return url[5:].partition(";")[0] + " (base64)"
    return url


def usage_of(answer: Answer, flavour: str) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": answer.input_tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": answer.input_tokens + answer.output_tokens,
        "prompt_tokens_details": {"cached_tokens": answer.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": answer.reasoning_tokens},
    }
    if flavour == "deepseek":
        # DeepSeek reports cache use in its own fields, without OpenAI's details.
        del usage["prompt_tokens_details"]
        usage["prompt_cache_hit_tokens"] = answer.cached_tokens
        usage["prompt_cache_miss_tokens"] = answer.input_tokens - answer.cached_tokens
    return usage


def _tool_calls(answer: Answer) -> list[dict[str, Any]]:
    return [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": orjson.dumps(call.arguments).decode()},
        }
        for call in answer.tool_calls
    ]


def answer_completion(model: str, answer: Answer, flavour: str) -> dict[str, Any]:
    """A chat.completion for a planned answer."""
    message: dict[str, Any] = {"role": "assistant", "content": answer.text or None}
    if answer.tool_calls:
        message["tool_calls"] = _tool_calls(answer)
    body = completion(model, answer.text, usage_of(answer, flavour))
    body["choices"][0]["message"] = message
    body["choices"][0]["finish_reason"] = answer.finish
    return body


def answer_chunks(
    model: str, answer: Answer, *, pieces: int, include_usage: bool, flavour: str
) -> Iterator[dict[str, Any]]:
    """The chunks of a planned answer; ``{"error": …}`` midway when the answer fails."""
    chunk_id = completion_id()
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if include_usage:
            body["usage"] = None
        return body

    yield chunk({"role": "assistant", "content": ""})
    text_pieces = split_evenly(answer.text, pieces) if answer.text else []
    if answer.fails_midway:
        yield from (
            chunk({"content": piece}) for piece in text_pieces[: max(len(text_pieces) // 2, 1)]
        )
        yield error_body("The server had an error while processing your request.", "server_error")
        return

    for piece in text_pieces:
        yield chunk({"content": piece})
    for index, call in enumerate(answer.tool_calls):
        first, second = halves(orjson.dumps(call.arguments).decode())
        opening = {"index": index, "id": call.id, "type": "function"}
        yield chunk(
            {"tool_calls": [{**opening, "function": {"name": call.name, "arguments": first}}]}
        )
        yield chunk({"tool_calls": [{"index": index, "function": {"arguments": second}}]})
    yield chunk({}, finish_reason=answer.finish)
    usage = usage_of(answer, flavour)
    if flavour == "groq":
        # Groq puts the usage of a stream in its x_groq extension of the last chunk.
        yield {**chunk({}), "choices": [], "x_groq": {"id": "req_emulated", "usage": usage}}
    elif include_usage:
        yield {**chunk({}), "choices": [], "usage": usage}
