"""Durable, idempotent consumers: each event is applied once, whatever NATS redelivers.

A projection records the id of every event it applied in the same transaction as the
change the event caused. A redelivery (after a crash between commit and ack, or a
resend by the relay) finds the id already there and is acknowledged without effect.
Consumers ack explicitly, one message in flight, so events apply in stream order; a
failure is logged and the message is redelivered after a pause.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from faststream import AckPolicy
from faststream.nats import (
    ConsumerConfig,
    DeliverPolicy,
    JStream,
    NatsBroker,
    NatsMessage,
    PullSub,
)
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.db import upsert
from shared.events.envelope import Envelope
from shared.events.store import EventTables

log = structlog.get_logger(__name__)
_tracer = trace.get_tracer("byom.events")
# The producer's trace context rides in the envelope, so a consumer's work joins its trace.
_propagator = TraceContextTextMapPropagator()

Apply = Callable[[AsyncConnection, Envelope], Awaitable[None]]
Prepare = Callable[[Envelope], Awaitable[Any]]

_RETRY_DELAY_SECONDS = 1.0


class Projection:
    """Applies events to a service's own tables, exactly once per event id."""

    def __init__(self, engine: AsyncEngine, tables: EventTables, *, name: str) -> None:
        self._engine = engine
        self._processed = tables.processed
        self.name = name

    async def apply_once(
        self, envelope: Envelope, apply: Apply, after_commit: Callable[[], None] | None = None
    ) -> bool:
        """Apply in one transaction with the record of it; False if already applied."""
        async with self._engine.begin() as conn:
            statement = (
                upsert(conn, self._processed)
                .values(consumer=self.name, event_id=envelope.id)
                .on_conflict_do_nothing()
                .returning(self._processed.c.event_id)
            )
            if (await conn.execute(statement)).first() is None:
                return False

            await apply(conn, envelope)

        if after_commit is not None:
            after_commit()

        return True


def subscribe_projection(
    broker: NatsBroker,
    projection: Projection,
    *,
    stream: str,
    subject: str,
    handle: Callable[[Envelope], Awaitable[None]],
    ack_wait_seconds: float,
) -> None:
    """Register a durable pull consumer that feeds ``handle`` and acks after it returns."""

    async def on_message(body: dict[str, Any], msg: NatsMessage) -> None:
        envelope = Envelope.model_validate(body)
        bound = structlog.contextvars.bound_contextvars(
            consumer=projection.name,
            event_id=envelope.id,
            event_type=envelope.type,
            workspace_id=envelope.workspaceid,
        )
        parent = _propagator.extract({"traceparent": envelope.traceparent or ""})
        with (
            bound,
            _tracer.start_as_current_span(
                f"process {envelope.type}", context=parent, kind=trace.SpanKind.CONSUMER
            ) as span,
        ):
            span.set_attribute("messaging.system", "nats")
            span.set_attribute("messaging.message.id", envelope.id)
            span.set_attribute("messaging.consumer.group.name", projection.name)
            try:
                await handle(envelope)
            except Exception:
                log.exception("event_handling_failed")
                await msg.nack(delay=_RETRY_DELAY_SECONDS)
                return

            await msg.ack()
            log.debug("event_handled")

    broker.subscriber(
        subject,
        # The stream is the runtime's to create; FastStream only binds to it.
        stream=JStream(stream, declare=False),
        durable=projection.name,
        pull_sub=PullSub(batch_size=1, timeout=1.0),
        config=ConsumerConfig(
            durable_name=projection.name,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=ack_wait_seconds,
            max_ack_pending=1,
        ),
        ack_policy=AckPolicy.MANUAL,
    )(on_message)
