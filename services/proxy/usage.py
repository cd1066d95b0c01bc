"""Usage events, published off the hot path.

A call puts its usage on a bounded queue and returns; a background task, a few
milliseconds after the first record arrives, takes what is queued, up to a batch, writes
each as its event envelope (the call's own time kept), publishes it to JetStream without
waiting between messages, then waits for every acknowledgement, and republishes what was
not acknowledged. The event id is the ``Nats-Msg-Id``, so a republished event is not
counted twice. When NATS is down the queue fills up to its bound and further records are
dropped and counted, so an outage grows no memory without limit. A graceful shutdown
publishes what is queued; an abrupt kill loses what was queued and not yet acknowledged:
in steady operation at most one batch in flight plus the calls that finished meanwhile,
and never more than the queue's bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from nats.js import JetStreamContext
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from shared.events.schemas import UsageRecorded

log = structlog.get_logger(__name__)

_RETRY_SECONDS = 0.5
_BATCH_WINDOW_SECONDS = 0.005
_ACK_TIMEOUT_SECONDS = 5.0
BATCH_SIZE = 256


@dataclass(frozen=True, slots=True)
class _Recorded:
    usage: UsageRecorded
    workspace_id: str
    actor_id: str
    at: datetime

    def encoded(self) -> tuple[str, bytes]:
        """The event's id and its envelope as JSON, written straight from the fields.

        What :meth:`Envelope.to_json` would write for the same event, without building and
        dumping two pydantic models per call: the publisher does this for every call the
        proxy carries. The id is the request's own (as a UUID), so an event republished
        after a lost acknowledgement is the same event to the stream's deduplication.
        """
        request_id = self.usage.request_id
        event_id = _as_uuid(request_id)
        envelope = {
            "specversion": "1.0",
            "id": event_id,
            "source": "/byom/proxy",
            "type": _EVENT_TYPE,
            "subject": f"usage-{request_id}",
            "time": self.at,
            "datacontenttype": "application/json",
            # model_construct filled in the defaults; the fields are plain JSON values.
            "data": {name: getattr(self.usage, name) for name in _FIELDS},
            "workspaceid": self.workspace_id,
            "actorid": self.actor_id,
            "correlationid": request_id,
            "streamid": f"usage-{request_id}",
            "streamversion": 1,
        }
        return event_id, orjson.dumps(envelope, option=orjson.OPT_UTC_Z)


_EVENT_TYPE = UsageRecorded.event_type()
_FIELDS = tuple(UsageRecorded.model_fields)


def _as_uuid(hex_id: str) -> str:
    """A 32-digit hex id in the UUID's usual 8-4-4-4-12 form."""
    if len(hex_id) != 32:
        return hex_id

    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"


def _observing(read: Callable[[], int]) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(read())]

    return observe


class UsageRecorder:
    def __init__(
        self, js: JetStreamContext, *, stream: str, subject_prefix: str, capacity: int
    ) -> None:
        self._js = js
        self._stream = stream
        self._subject = UsageRecorded.subject(subject_prefix)
        self._queue: asyncio.Queue[_Recorded] = asyncio.Queue(maxsize=capacity)
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        self.dropped = 0
        self._in_flight = 0

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def register_metrics(self) -> None:
        """Published, dropped and queued usage events, read by each metrics scrape."""
        meter = metrics.get_meter("byom.proxy")
        meter.create_observable_counter(
            "byom.proxy.usage.published",
            [_observing(lambda: self.published)],
            unit="{event}",
            description="Usage events JetStream acknowledged.",
        )
        meter.create_observable_counter(
            "byom.proxy.usage.dropped",
            [_observing(lambda: self.dropped)],
            unit="{event}",
            description="Usage events dropped because the queue was full (NATS unreachable).",
        )
        meter.create_observable_gauge(
            "byom.proxy.usage.queued",
            [_observing(lambda: self.pending)],
            unit="{event}",
            description="Usage events waiting to be published.",
        )

    def record(self, usage: UsageRecorded, *, workspace_id: str, actor_id: str) -> None:
        """Queue one call's usage; the envelope is made and sent off the request's path."""
        try:
            self._queue.put_nowait(_Recorded(usage, workspace_id, actor_id, datetime.now(UTC)))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("usage_dropped", request_id=usage.request_id, dropped_total=self.dropped)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-recorder")

    async def stop(self, within_seconds: float = 10.0) -> None:
        """Publish what is queued (within the timeout), then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), within_seconds)
        # Still queued, and taken but not yet acknowledged (a batch being retried).
        lost = self.pending + self._in_flight
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if lost:
            log.error("usage_lost_at_shutdown", count=lost)

    async def _run(self) -> None:
        while True:
            taken = [await self._queue.get()]
            # Calls that arrive together finish together: publishing waits for them to be
            # answered, where it would otherwise take its turn on the loop in their midst.
            await asyncio.sleep(_BATCH_WINDOW_SECONDS)
            while len(taken) < BATCH_SIZE and not self._queue.empty():
                taken.append(self._queue.get_nowait())
            try:
                batch = self._encoded(taken)
                self._in_flight = len(batch)
                await self._publish(batch)
            except Exception:
                # Whatever went wrong with this batch, the publisher must outlive it: every
                # later call's usage depends on it.
                log.exception("usage_batch_failed", size=len(taken))
                self.dropped += self._in_flight
            finally:
                self._in_flight = 0
                for _ in taken:
                    self._queue.task_done()

    def _encoded(self, taken: list[_Recorded]) -> list[tuple[str, bytes]]:
        """Each record as its event; one that cannot be written is dropped and counted."""
        batch = []
        for recorded in taken:
            try:
                batch.append(recorded.encoded())
            except (TypeError, ValueError) as error:
                # A provider's absurd figure, say a token count past 64 bits.
                self.dropped += 1
                log.error(
                    "usage_unencodable",
                    request_id=recorded.usage.request_id,
                    error=type(error).__name__,
                )
        return batch

    async def _publish(self, batch: list[tuple[str, bytes]]) -> None:
        pending = batch
        while pending:
            outcomes = await self._publish_once(pending)
            failed = [
                e for e, outcome in zip(pending, outcomes, strict=True) if outcome is not None
            ]
            self.published += len(pending) - len(failed)
            self._in_flight = len(failed)
            if not failed:
                return

            first_error = next(outcome for outcome in outcomes if outcome is not None)
            log.warning("usage_publish_retry", failed=len(failed), error=type(first_error).__name__)
            pending = failed
            await asyncio.sleep(_RETRY_SECONDS)

    async def _publish_once(self, batch: list[tuple[str, bytes]]) -> list[BaseException | None]:
        """Publish a batch back to back; the error of each one not acknowledged, else None."""
        acks: list[asyncio.Future[Any] | BaseException] = []
        for event_id, payload in batch:
            try:
                acks.append(
                    await self._js.publish_async(
                        self._subject,
                        payload,
                        stream=self._stream,
                        headers={"Nats-Msg-Id": event_id, "ce-type": _EVENT_TYPE},
                    )
                )
            except asyncio.CancelledError:
                raise
            except Exception as error:
                acks.append(error)

        pending = [ack for ack in acks if isinstance(ack, asyncio.Future)]
        if pending:
            # One wait for the whole batch. A wait per acknowledgement cost a turn of the
            # event loop each, and under load the publisher fell behind the calls.
            await asyncio.wait(pending, timeout=_ACK_TIMEOUT_SECONDS)
        return [_outcome(ack) for ack in acks]


def _outcome(ack: asyncio.Future[Any] | BaseException) -> BaseException | None:
    """Why one publish was not acknowledged, or None if it was."""
    if isinstance(ack, BaseException):
        return ack

    if not ack.done():
        ack.cancel()
        return TimeoutError(f"no acknowledgement within {_ACK_TIMEOUT_SECONDS} s")

    if ack.cancelled():
        return asyncio.CancelledError()

    return ack.exception()
