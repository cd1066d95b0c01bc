"""OpenAI's Responses API (``POST /v1/responses``) over any chat model.

Covered: ``instructions``; ``input`` as a string or as message items (input text and
images, earlier assistant output text), ``function_call`` and ``function_call_output``
items; function ``tools`` and ``tool_choice``; ``text.format`` (JSON schema or object);
``reasoning.effort``; ``max_output_tokens``, ``temperature``, ``top_p``; streaming of text
and function-call arguments. The answer is a Response with ``message`` and
``function_call`` output items and usage.

Not covered, refused with UnsupportedFeature naming the field: ``previous_response_id``
and ``conversation`` (the gateway keeps no state), ``background``, built-in tools (web
search, file search, code interpreter, computer use, MCP, custom tools), file inputs and
``item_reference`` items. Reasoning items in ``input`` are dropped (their encrypted
content belongs to the model that wrote them); ``store`` and ``include`` are ignored.
An OpenAI target (or any provider listing the ``openai-responses`` door) gets the request
unchanged instead: the proxy passes it through.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Final

from shared.providers.base import UnsupportedFeature, Usage
from shared.providers.openai_compatible import usage_of

_IGNORED: Final = frozenset(
    {
        "store",
        "include",
        "metadata",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
        "user",
        "truncation",
        "stream_options",
    }
)
_TRANSLATED: Final = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_output_tokens",
        "temperature",
        "top_p",
        "text",
        "reasoning",
        "stream",
    }
)


def new_item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def responses_to_chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """The chat body for a Responses body; UnsupportedFeature names what cannot go."""
    for name, value in body.items():
        if name in _TRANSLATED or name in _IGNORED or value is None or value is False:
            continue
        raise UnsupportedFeature(name, f"'{name}' is not supported by the gateway's Responses API.")

    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    messages.extend(_input_messages(body.get("input")))
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    for source, target in (
        ("max_output_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("parallel_tool_calls", "parallel_tool_calls"),
    ):
        if body.get(source) is not None:
            chat[target] = body[source]
    _tools(body, chat)
    _text_and_reasoning(body, chat)
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def _input_messages(given: object) -> list[dict[str, Any]]:
    if isinstance(given, str):
        return [{"role": "user", "content": given}]

    if not isinstance(given, list):
        raise UnsupportedFeature("input", "'input' must be a string or an array of items.")

    messages: list[dict[str, Any]] = []
    for index, item in enumerate(given):
        path = f"input[{index}]"
        if not isinstance(item, dict):
            raise UnsupportedFeature(path, "each input item must be an object.")

        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(path, item))
        elif kind == "function_call":
            _append_call(messages, item)
        elif kind == "function_call_output":
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": str(item.get("call_id")),
                    "content": _output_text(path, item.get("output")),
                }
            )
        elif kind == "reasoning":
            continue
        else:
            raise UnsupportedFeature(f"{path}.type", f"'{kind}' input items are not supported.")
    return messages


def _message(path: str, item: dict[str, Any]) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise UnsupportedFeature(f"{path}.role", f"unknown role {role!r}.")

    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}

    if not isinstance(content, list):
        raise UnsupportedFeature(f"{path}.content", "'content' must be a string or parts.")

    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        part_path = f"{path}.content[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text") and isinstance(part, dict):
            parts.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "refusal" and isinstance(part, dict):
            parts.append({"type": "text", "text": str(part.get("refusal", ""))})
        elif kind == "input_image" and isinstance(part, dict):
            if not isinstance(part.get("image_url"), str):
                raise UnsupportedFeature(part_path, "images must be given by 'image_url'.")
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail") in ("low", "high"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise UnsupportedFeature(part_path, f"'{kind}' content is not supported.")

    if role != "user" and all(p["type"] == "text" for p in parts):
        return {"role": role, "content": "".join(p["text"] for p in parts)}

    return {"role": role, "content": parts}


def _append_call(messages: list[dict[str, Any]], item: dict[str, Any]) -> None:
    call = {
        "id": str(item.get("call_id")),
        "type": "function",
        "function": {"name": str(item.get("name")), "arguments": str(item.get("arguments", ""))},
    }
    # Consecutive calls (and the text just before them) are one assistant turn of
    # parallel calls in chat terms.
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
        return

    messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _output_text(path: str, output: object) -> str:
    if isinstance(output, str):
        return output

    if isinstance(output, list):
        texts = []
        for index, part in enumerate(output):
            if not isinstance(part, dict) or part.get("type") not in ("input_text", "output_text"):
                raise UnsupportedFeature(f"{path}.output[{index}]", "tool outputs must be text.")
            texts.append(str(part.get("text", "")))
        return "".join(texts)

    raise UnsupportedFeature(f"{path}.output", "a function call output must be text.")


def _tools(body: dict[str, Any], chat: dict[str, Any]) -> None:
    tools = []
    for index, tool in enumerate(body.get("tools") or []):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise UnsupportedFeature(
                f"tools[{index}].type", f"the built-in tool {kind!r} is not supported."
            )

        function: dict[str, Any] = {
            "name": tool.get("name"),
            "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
        }
        for name in ("description", "strict"):
            if tool.get(name) is not None:
                function[name] = tool[name]
        tools.append({"type": "function", "function": function})
    if tools:
        chat["tools"] = tools

    choice = body.get("tool_choice")
    if choice is None:
        return

    if choice in ("auto", "none", "required"):
        chat["tool_choice"] = choice
    elif isinstance(choice, dict) and choice.get("type") == "function":
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    else:
        raise UnsupportedFeature("tool_choice", "only auto, none, required or a function.")


def _text_and_reasoning(body: dict[str, Any], chat: dict[str, Any]) -> None:
    text = body.get("text")
    output_format = text.get("format") if isinstance(text, dict) else None
    kind = output_format.get("type") if isinstance(output_format, dict) else None
    if kind == "json_schema" and isinstance(output_format, dict):
        spec = {
            "name": output_format.get("name") or "output",
            "schema": output_format.get("schema"),
        }
        if output_format.get("strict") is not None:
            spec["strict"] = output_format["strict"]
        chat["response_format"] = {"type": "json_schema", "json_schema": spec}
    elif kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
    if isinstance(text, dict) and text.get("verbosity") is not None:
        chat["verbosity"] = text["verbosity"]

    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") is not None:
        chat["reasoning_effort"] = reasoning["effort"]


def responses_usage(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None

    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_input_tokens,
            "cache_write_tokens": 0,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def response_object(
    request: dict[str, Any],
    *,
    response_id: str,
    model: str,
    output: list[dict[str, Any]],
    status: str,
    usage: Usage | None,
    created_at: float | None = None,
) -> dict[str, Any]:
    """A Response, echoing the request's parameters as OpenAI does."""
    body: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": int(created_at or time.time()),
        "status": status,
        "model": model,
        "output": output,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "metadata": request.get("metadata") or {},
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "temperature": request.get("temperature"),
        "top_p": request.get("top_p"),
        "tool_choice": request.get("tool_choice") or "auto",
        "tools": request.get("tools") or [],
        "text": request.get("text") or {"format": {"type": "text"}},
        "usage": responses_usage(usage),
    }
    return body


def chat_to_responses_response(
    completion: dict[str, Any], request: dict[str, Any], *, model: str
) -> dict[str, Any]:
    """The Response for a chat completion; ``request`` is the caller's Responses body."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        output.append(message_item(new_item_id("msg"), text, "completed"))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        output.append(
            function_call_item(
                new_item_id("fc"),
                str(call.get("id")),
                str(function.get("name", "")),
                str(function.get("arguments") or ""),
                "completed",
            )
        )
    status = "incomplete" if choice.get("finish_reason") == "length" else "completed"
    return response_object(
        request,
        response_id=new_item_id("resp"),
        model=model,
        output=output,
        status=status,
        usage=usage_of(completion),
    )


def message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [output_text_part(text)] if status == "completed" else [],
    }


def output_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str
) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }
