"""A local stand-in for an OpenAI-compatible provider, for tests and benchmarks.

It speaks OpenAI's documented wire format for ``GET /v1/models`` (paged) and
``POST /v1/chat/completions`` (plain and streamed), records every request it receives,
and fails on demand. It echoes a rejected key in its 401 message by default, as real
providers do, so tests can prove the gateway never repeats it.

    state = EmulatorState(keys={"sk-test-1"}, models=["gpt-a", "gpt-b"])
    async with running_emulator(state) as base_url:
        ...  # base_url is "http://127.0.0.1:<port>/v1"

Run it on its own with ``python -m tests.emulator --key sk-test-1``.
"""

from tests.emulator.app import create_app
from tests.emulator.server import running_emulator
from tests.emulator.state import EmulatorState, Fault, RecordedRequest

__all__ = ["EmulatorState", "Fault", "RecordedRequest", "create_app", "running_emulator"]
