"""One call through the proxy, and how it is accounted: usage event, metrics, span, log line.

Every door (chat completions, messages, count_tokens, responses, embeddings) records
each call it carried to a provider the same way: one ``usage.recorded`` event, the GenAI
client metrics, a client span, and one canonical log line. A call the proxy refused
before choosing a provider (no token, no grant, a malformed body) is none of these: the
refusal is answered and logged by the door.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from dataclasses import dataclass, field
from typing import Any, Final

import structlog
from opentelemetry import metrics, trace

from services.proxy.errors import Dialect
from services.proxy.keys import Credential
from services.proxy.usage import UsageRecorder
from services.proxy.view import Caller, Route
from shared.events.schemas import UsageRecorded
from shared.providers import ProviderAdapter, Usage

log = structlog.get_logger(__name__)
tracer = trace.get_tracer("byom.proxy")

# How long after a call its metrics and log line are written, with those of the calls
# finished meanwhile.
_ACCOUNT_AFTER: Final = 0.005

# The GenAI semantic conventions' operation names; every door that generates is "chat".
_GENAI_OPERATIONS: Final = {
    "chat": "chat",
    "messages": "chat",
    "responses": "chat",
    "embeddings": "embeddings",
    "count_tokens": "count_tokens",
}


@dataclass(slots=True)
class Call:
    """One call on its way through the proxy.

    ``operation`` names the door in the usage event: chat, messages, responses,
    embeddings or count_tokens.
    """

    request_id: str
    caller: Caller
    route: Route
    adapter: ProviderAdapter
    credential: Credential
    dialect: Dialect
    operation: str
    streamed: bool
    started: float = field(default_factory=time.perf_counter)
    usage: Usage | None = None
    status: int = 200

    @property
    def provider(self) -> str:
        """The provider as members know it: the connection's name."""
        return self.route.connection.name

    @property
    def upstream_model(self) -> str:
        return self.route.model.upstream_id

    @property
    def genai_operation(self) -> str:
        return _GENAI_OPERATIONS.get(self.operation, self.operation)


class GenAIMeters:
    """The GenAI semantic conventions' client metrics, for calls to providers."""

    def __init__(self) -> None:
        meter = metrics.get_meter("byom.proxy")
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="Duration of provider calls."
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Tokens used per call."
        )

    def record(self, call: Call, seconds: float) -> None:
        attributes: dict[str, str | int] = {
            "gen_ai.operation.name": call.genai_operation,
            "gen_ai.provider.name": call.route.connection.provider,
            "gen_ai.request.model": call.upstream_model,
        }
        if call.status != 200:
            attributes["error.type"] = str(call.status)
        self.duration.record(seconds, attributes)
        if call.usage is not None:
            self.tokens.record(
                call.usage.input_tokens, {**attributes, "gen_ai.token.type": "input"}
            )
            self.tokens.record(
                call.usage.output_tokens, {**attributes, "gen_ai.token.type": "output"}
            )


class CallRecorder:
    """Accounts for finished calls: the usage event, the metrics and the log line."""

    def __init__(self, usage: UsageRecorder) -> None:
        self._usage = usage
        self._meters = GenAIMeters()
        self._unaccounted: list[tuple[Call, float, contextvars.Context]] = []
        self._accounting: asyncio.TimerHandle | None = None

    def record(self, call: Call) -> None:
        usage = call.usage or Usage()
        seconds = time.perf_counter() - call.started
        duration_ms = round(seconds * 1000, 2)
        # Built from the proxy's own fields, which need no validation on the request's path.
        self._usage.record(
            UsageRecorded.model_construct(
                request_id=call.request_id,
                user_id=call.caller.user_id,
                token_id=call.caller.token_id,
                model_id=call.route.model.model_id,
                model_name=call.route.model.name,
                connection_id=call.route.connection.connection_id,
                provider=call.route.connection.provider,
                operation=call.operation,
                streamed=call.streamed,
                status=call.status,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_input_tokens=usage.cached_input_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                duration_ms=duration_ms,
                source="managed" if call.route.model.source == "managed" else "byom",
                alias=call.route.alias,
            ),
            workspace_id=call.caller.workspace_id,
            actor_id=call.caller.user_id,
        )
        self._account_soon(call, seconds)

    def flush(self) -> None:
        """Metrics and log lines of the calls not yet accounted for, now (at shutdown)."""
        if self._accounting is not None:
            self._accounting.cancel()
        self._account()

    def _account_soon(self, call: Call, seconds: float) -> None:
        """Metrics and the log line a moment later, for every call finished meanwhile.

        A histogram costs the SDK ~8 us, three per call, and a log line at INFO ~30 us.
        Calls that arrive together finish together; accounted for right away, each would
        wait for the others' accounts. A moment later the loop is most often idle. The
        log line keeps the call's context (workspace, user, model, trace).
        """
        self._unaccounted.append((call, seconds, contextvars.copy_context()))
        if self._accounting is None:
            self._accounting = asyncio.get_running_loop().call_later(_ACCOUNT_AFTER, self._account)

    def _account(self) -> None:
        self._accounting = None
        finished, self._unaccounted = self._unaccounted, []
        for call, seconds, context in finished:
            self._meters.record(call, seconds)
            context.run(_log_call, call, seconds)


def _log_call(call: Call, seconds: float) -> None:
    usage = call.usage or Usage()
    log.info(
        "model_call",
        request_id=call.request_id,
        operation=call.operation,
        status=call.status,
        streamed=call.streamed,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        duration_ms=round(seconds * 1000, 2),
    )


def start_span(call: Call, parent: Any) -> trace.Span:
    """The call's client span, named as the GenAI conventions say: operation and model."""
    attributes: dict[str, str | bool] = {
        "gen_ai.operation.name": call.genai_operation,
        "byom.operation": call.operation,
        "byom.workspace.id": call.caller.workspace_id,
        "byom.model.name": call.route.model.name,
        "byom.request.id": call.request_id,
        "gen_ai.provider.name": call.route.connection.provider,
        "gen_ai.request.model": call.upstream_model,
    }
    if call.streamed:
        attributes["gen_ai.request.stream"] = True
    return tracer.start_span(
        f"{call.genai_operation} {call.route.model.name}",
        context=parent,
        kind=trace.SpanKind.CLIENT,
        attributes=attributes,
    )


def end_span(span: trace.Span, call: Call) -> None:
    if call.usage is not None:
        span.set_attributes(
            {
                "gen_ai.usage.input_tokens": call.usage.input_tokens,
                "gen_ai.usage.output_tokens": call.usage.output_tokens,
            }
        )
    if call.status != 200:
        span.set_attribute("error.type", str(call.status))
    span.end()


def tracing() -> bool:
    """Whether spans are recorded (and so whether a caller's trace context is worth reading)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
