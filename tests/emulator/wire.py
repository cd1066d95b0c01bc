"""OpenAI's documented JSON shapes, built from plain values.

Answers are deterministic: the same messages and model give the same content and token
counts, so tests can state exact expectations. Tokens are counted as whitespace-separated
words, which is not how a real tokenizer counts, but is stable and easy to predict.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

_ECHO_LIMIT = 40

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
    echo = user_texts[-1] if user_texts else ""
    if len(echo) > _ECHO_LIMIT:
        echo = echo[:_ECHO_LIMIT] + "…"

    return f"Hello from {model}: {echo}"


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


def split_evenly(text: str, pieces: int) -> list[str]:
    """``text`` cut into exactly ``pieces`` parts (some empty if it is shorter)."""
    pieces = max(pieces, 1)
    return [text[i * len(text) // pieces : (i + 1) * len(text) // pieces] for i in range(pieces)]


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
