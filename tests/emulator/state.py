"""What the emulator knows and remembers: keys, models, faults to inject, requests seen.

Tests steer the emulator by changing this object directly, or over HTTP through the
``/_emulator/`` control routes, which change the same object. One state serves every
provider's routes: the same keys, models and scenario, each in its own wire format.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request that reached an upstream route, as the emulator received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any = None

    @property
    def bearer(self) -> str | None:
        """The key sent as ``Authorization: Bearer …``, if any."""
        scheme, _, credentials = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            return None

        return credentials.strip()

    @property
    def api_key(self) -> str | None:
        """The key however the provider takes it: bearer, ``x-api-key`` or ``x-goog-api-key``."""
        return (
            self.bearer
            or self.headers.get("x-api-key")
            or self.headers.get("x-goog-api-key")
            or self.query.get("key")
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body.decode("utf-8", errors="replace"),
            "json": self.json,
        }


@dataclass(frozen=True, slots=True)
class Fault:
    """An answer to give instead of the real one.

    ``raw_body`` replaces the OpenAI-style error body, so a fault can also be a 200
    carrying garbage; ``headers`` go with it (a Content-Encoding nobody asked for, say).
    """

    status: int
    retry_after: float | None = None
    raw_body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class EmulatorState:
    """The emulated provider: its keys, models and behaviour, and what it has seen."""

    keys: set[str] = field(default_factory=set)
    # A local server (vLLM, Ollama): it checks no key, so any key or none is let in.
    keyless: bool = False
    models: list[str] = field(default_factory=lambda: ["gpt-emulated"])
    page_size: int = 2
    delay: float = 0.0
    stream_chunks: int = 4
    # Pause between stream chunks, so a test can leave in the middle of a stream.
    chunk_delay: float = 0.0
    echo_key_in_errors: bool = True
    owned_by: str = "emulator"
    created: int = 1_700_000_000
    # How the model answers; see tests.emulator.scenarios for each one.
    scenario: str = "text"
    # OpenAI-format quirks to play: "openai", "groq" (x_groq usage), "deepseek" (cache
    # hit fields), "openrouter" (SSE comment lines).
    openai_flavour: str = "openai"
    # Groq: listed models it has switched off, which carry "active": false.
    inactive_models: list[str] = field(default_factory=list)
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    # Bedrock: inference profile ids, listed page_size at a time after the models.
    inference_profiles: list[str] = field(default_factory=list)
    # Gemini: models that only embed, which a chat gateway must leave out of its list.
    embedding_models: list[str] = field(default_factory=list)
    # Bedrock streams: write each event-stream frame in two pieces, split mid-prelude.
    split_frames: bool = True
    requests: list[RecordedRequest] = field(default_factory=list)
    faults: deque[Fault] = field(default_factory=deque)
    streams_finished: int = 0
    # Streams whose client (the gateway) went away before the last chunk.
    streams_cancelled: int = 0
    # Requests whose client went away while the emulator was still "thinking" (delay).
    requests_abandoned: int = 0

    def fail_next(
        self,
        status: int,
        times: int = 1,
        retry_after: float | None = None,
        raw_body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` upstream requests with ``status`` instead."""
        if times < 1:
            raise ValueError("a fault must apply at least once")

        fault = Fault(
            status=status,
            retry_after=retry_after,
            raw_body=raw_body,
            headers=tuple((headers or {}).items()),
        )
        self.faults.extend([fault] * times)

    def take_fault(self) -> Fault | None:
        return self.faults.popleft() if self.faults else None

    def accepts(self, key: str | None) -> bool:
        return self.keyless or (key is not None and key in self.keys)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """Recorded requests whose path ends with ``path`` (e.g. ``"/models"``)."""
        return [r for r in self.requests if r.path.endswith(path)]
