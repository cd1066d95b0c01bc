"""OpenAI chat chunks, as they arrive, encoded as the Responses API's SSE events.

Events, each with a rising ``sequence_number``::

    response.created, response.in_progress
    text:  response.output_item.added (message), response.content_part.added,
           response.output_text.delta…, response.output_text.done,
           response.content_part.done, response.output_item.done
    calls: response.output_item.added (function_call),
           response.function_call_arguments.delta…, response.function_call_arguments.done,
           response.output_item.done
    response.completed (or response.incomplete when the answer hit max_output_tokens)

A failure midway sends an ``error`` event, then ``response.failed``. Reasoning deltas,
refusals and annotations are not streamed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from shared.providers.base import UpstreamFailure, Usage
from shared.providers.openai_compatible import usage_of
from shared.translation.errors import openai_failure
from shared.translation.responses import (
    function_call_item,
    message_item,
    new_item_id,
    output_text_part,
    response_object,
)
from shared.translation.sse import named_event


@dataclass(slots=True)
class _Item:
    """One output item being streamed."""

    kind: str  # "message" or "function_call"
    id: str
    output_index: int
    text: str = ""
    call_id: str = ""
    name: str = ""
    done: bool = False
    arguments: list[str] = field(default_factory=list)

    def as_output(self, status: str) -> dict[str, Any]:
        if self.kind == "message":
            return message_item(self.id, self.text, status)

        return function_call_item(self.id, self.call_id, self.name, "".join(self.arguments), status)


class ResponsesStreamEncoder:
    """Turns one answer's OpenAI chunks into Responses SSE bytes."""

    def __init__(self, request: dict[str, Any], *, model: str) -> None:
        self._request = request
        self._model = model
        self._id = new_item_id("resp")
        self._created_at = time.time()
        self._sequence = 0
        self._started = False
        self._ended = False
        self._items: list[_Item] = []
        self._text: _Item | None = None
        self._calls: dict[int, _Item] = {}
        self._finish: object = None
        self._usage: Usage | None = None

    def feed(self, chunk: dict[str, Any]) -> bytes:
        if self._ended:
            return b""

        out = [self._start()]
        usage = usage_of(chunk)
        if usage is not None:
            self._usage = usage
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str) and delta["content"]:
                out.append(self._text_delta(delta["content"]))
            for call in delta.get("tool_calls") or []:
                out.append(self._call_delta(call))
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return b"".join(out)

    def finish(self) -> bytes:
        if self._ended:
            return b""

        out = [self._start()]
        out.extend(self._close(item) for item in self._items)
        status = "incomplete" if self._finish == "length" else "completed"
        out.append(self._event(f"response.{status}", {"response": self._response(status)}))
        self._ended = True
        return b"".join(out)

    def fail(self, failure: UpstreamFailure, provider: str | None = None) -> bytes:
        if self._ended:
            return b""

        error = openai_failure(failure, provider).body["error"]
        out = [self._start()]
        out.append(
            self._event(
                "error", {"code": error["code"], "message": error["message"], "param": None}
            )
        )
        failed = self._response("failed")
        code = "rate_limit_exceeded" if failure.category == "rate_limited" else "server_error"
        failed["error"] = {"code": code, "message": error["message"]}
        out.append(self._event("response.failed", {"response": failed}))
        self._ended = True
        return b"".join(out)

    @property
    def usage(self) -> Usage | None:
        return self._usage

    def _start(self) -> bytes:
        if self._started:
            return b""

        self._started = True
        return self._event(
            "response.created", {"response": self._response("in_progress")}
        ) + self._event("response.in_progress", {"response": self._response("in_progress")})

    def _text_delta(self, text: str) -> bytes:
        out = b""
        if self._text is None:
            self._text = self._add("message", new_item_id("msg"))
            out += self._event(
                "response.output_item.added",
                {
                    "output_index": self._text.output_index,
                    "item": self._text.as_output("in_progress"),
                },
            )
            out += self._event(
                "response.content_part.added",
                {**self._where(self._text), "content_index": 0, "part": output_text_part("")},
            )
        self._text.text += text
        return out + self._event(
            "response.output_text.delta",
            {**self._where(self._text), "content_index": 0, "delta": text, "logprobs": []},
        )

    def _call_delta(self, call: dict[str, Any]) -> bytes:
        out = b""
        index = int(call.get("index", 0))
        function = call.get("function") or {}
        item = self._calls.get(index)
        if item is None:
            item = self._add("function_call", new_item_id("fc"))
            item.call_id = str(call.get("id") or new_item_id("call"))
            item.name = str(function.get("name") or "")
            self._calls[index] = item
            out += self._event(
                "response.output_item.added",
                {"output_index": item.output_index, "item": item.as_output("in_progress")},
            )
        fragment = function.get("arguments")
        if isinstance(fragment, str) and fragment:
            item.arguments.append(fragment)
            out += self._event(
                "response.function_call_arguments.delta", {**self._where(item), "delta": fragment}
            )
        return out

    def _close(self, item: _Item) -> bytes:
        if item.done:
            return b""

        item.done = True
        if item.kind == "message":
            part = output_text_part(item.text)
            where = {**self._where(item), "content_index": 0}
            done = self._event(
                "response.output_text.done", {**where, "text": item.text, "logprobs": []}
            )
            done += self._event("response.content_part.done", {**where, "part": part})
        else:
            done = self._event(
                "response.function_call_arguments.done",
                {**self._where(item), "arguments": "".join(item.arguments), "name": item.name},
            )
        return done + self._event(
            "response.output_item.done",
            {"output_index": item.output_index, "item": item.as_output("completed")},
        )

    def _add(self, kind: str, item_id: str) -> _Item:
        item = _Item(kind=kind, id=item_id, output_index=len(self._items))
        self._items.append(item)
        return item

    def _where(self, item: _Item) -> dict[str, Any]:
        return {"item_id": item.id, "output_index": item.output_index}

    def _response(self, status: str) -> dict[str, Any]:
        output = [item.as_output("completed") for item in self._items if item.done]
        return response_object(
            self._request,
            response_id=self._id,
            model=self._model,
            output=output,
            status=status,
            usage=self._usage if status != "in_progress" else None,
            created_at=self._created_at,
        )

    def _event(self, name: str, data: dict[str, Any]) -> bytes:
        payload = {"type": name, **data, "sequence_number": self._sequence}
        self._sequence += 1
        return named_event(name, payload)
