"""What the emulated model answers, whatever wire format the request came in.

Each provider's routes read their request into a :class:`Conversation`, ask :func:`plan`
for an :class:`Answer` under the scenario the test chose, and write the answer in their
own format. Answers are deterministic so tests can state exact expectations:

| scenario | answer |
|---|---|
| ``text`` | ``Hello from <model>: <start of the last user message>`` |
| ``tool_call`` | a call to each of the first two tools (parallel), arguments made from each tool's schema; plain text when no tool is offered |
| ``image_echo`` | ``I see <n> image(s): <media type or URL>, …`` |
| ``length`` | the text answer cut to three words, finish reason "length" |
| ``mid_stream_error`` | a stream that sends half the text, then the provider's error event; a 500 when not streamed |

Whatever the scenario, a conversation whose last turn carries tool results is answered
``Tool results: <result>; <result>``, so a tool round trip can be checked end to end.
Tokens are whitespace-separated words; cached and reasoning counts come from the state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

SCENARIOS: Final = ("text", "tool_call", "image_echo", "length", "mid_stream_error")
_ECHO_LIMIT: Final = 40
_TOOL_CALL_TOKENS: Final = 4


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    parameters: dict[str, Any]


@dataclass(slots=True)
class Conversation:
    """What the emulator reads of any provider's chat request."""

    model: str
    texts: list[str] = field(default_factory=list)
    last_user_text: str = ""
    images: list[str] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    # Results of the tool calls answered in the last user turn, if it answered any.
    tool_results: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    tool_calls: tuple[ToolCall, ...]
    finish: str  # "stop" | "tool_calls" | "length"
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    fails_midway: bool = False


def plan(
    scenario: str, conversation: Conversation, *, cached_tokens: int = 0, reasoning_tokens: int = 0
) -> Answer:
    """The answer to ``conversation`` under ``scenario``."""
    text, calls, finish = _content(scenario, conversation)
    input_tokens = sum(len(text.split()) for text in conversation.texts)
    output_tokens = len(text.split()) + _TOOL_CALL_TOKENS * len(calls) + reasoning_tokens
    return Answer(
        text=text,
        tool_calls=tuple(calls),
        finish=finish,
        input_tokens=input_tokens + cached_tokens,
        output_tokens=output_tokens,
        cached_tokens=cached_tokens,
        reasoning_tokens=reasoning_tokens,
        fails_midway=scenario == "mid_stream_error",
    )


def _content(scenario: str, conversation: Conversation) -> tuple[str, list[ToolCall], str]:
    if conversation.tool_results:
        return "Tool results: " + "; ".join(conversation.tool_results), [], "stop"

    if scenario == "tool_call" and conversation.tools:
        calls = [
            ToolCall(f"call_emulated_{index}", tool.name, arguments_for(tool.parameters))
            for index, tool in enumerate(conversation.tools[:2])
        ]
        return "", calls, "tool_calls"

    if scenario == "image_echo":
        count = len(conversation.images)
        return f"I see {count} image(s): {', '.join(conversation.images)}", [], "stop"

    text = hello(conversation.model, conversation.last_user_text)
    if scenario == "length":
        return " ".join(text.split()[:3]), [], "length"

    return text, [], "stop"


def hello(model: str, last_user_text: str) -> str:
    echo = last_user_text
    if len(echo) > _ECHO_LIMIT:
        echo = echo[:_ECHO_LIMIT] + "…"
    return f"Hello from {model}: {echo}"


def arguments_for(schema: dict[str, Any]) -> dict[str, Any]:
    """Arguments that fit a tool's JSON schema: one plain value per property."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return {}

    samples = {"string": "emulated", "number": 1, "integer": 1, "boolean": True, "array": []}
    return {
        name: samples.get(spec.get("type") if isinstance(spec, dict) else None, "emulated")
        for name, spec in properties.items()
    }


def split_evenly(text: str, pieces: int) -> list[str]:
    """``text`` cut into exactly ``pieces`` parts (some empty if it is shorter)."""
    pieces = max(pieces, 1)
    return [text[i * len(text) // pieces : (i + 1) * len(text) // pieces] for i in range(pieces)]


def halves(text: str) -> list[str]:
    """A JSON argument string in two fragments, to prove deltas are joined."""
    middle = len(text) // 2
    return [text[:middle], text[middle:]]
