"""A local stand-in for every provider the gateway speaks to, for tests and benchmarks.

It speaks each provider's documented wire format: OpenAI (and the OpenAI-style vendors'
quirks), Anthropic's Messages API, Google's Gemini API and Amazon Bedrock's Converse API
with its event-stream framing; model listing with each one's pagination; each one's error
bodies. It records every request it receives, fails on demand, and answers under a
scenario a test chooses (plain text, tool calls, image echo, length, a mid-stream error).
It echoes a rejected key in its error message by default, as some providers do, so tests
can prove the gateway never repeats it.

    state = EmulatorState(keys={"sk-test-1"}, models=["gpt-a", "gpt-b"])
    async with running_emulator(state) as base_url:
        ...  # base_url is "http://127.0.0.1:<port>/v1"
        anthropic = provider_base_url(base_url, "anthropic")

Run it on its own with ``python -m tests.emulator --key sk-test-1``.
"""

from tests.emulator.app import create_app
from tests.emulator.scenarios import SCENARIOS
from tests.emulator.server import provider_base_url, running_asgi, running_emulator
from tests.emulator.state import EmulatorState, Fault, RecordedRequest

__all__ = [
    "SCENARIOS",
    "EmulatorState",
    "Fault",
    "RecordedRequest",
    "create_app",
    "provider_base_url",
    "running_asgi",
    "running_emulator",
]
