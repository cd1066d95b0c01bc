"""Following the event stream into the proxy's view.

The proxy keeps nothing on disk, so at start it reads the stream from the beginning
with ephemeral ordered consumers, one per producing service, and applies every event
to the view. It is ready once each consumer has caught up with what the stream held;
from then on events apply as they arrive, which is how a revocation reaches the hot
path within milliseconds.

nats-py is used directly here: an ordered push consumer is exactly this job, and the
proxy needs each message's pending count to know when it has caught up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from services.proxy.view import View
from shared.events.envelope import Envelope

log = structlog.get_logger(__name__)

FOLLOWED_SERVICES = ("access", "catalog", "keyvault")


class Feed:
    """Applies the stream to the view, and tells whether the view is current."""

    def __init__(
        self,
        nc: NatsClient,
        view: View,
        *,
        stream: str,
        subject_prefix: str,
        on_event: Callable[[Envelope], None] | None = None,
    ) -> None:
        self._nc = nc
        self._view = view
        self._stream = stream
        self._prefix = subject_prefix
        self._on_event = on_event
        self._caught_up: dict[str, asyncio.Event] = {s: asyncio.Event() for s in FOLLOWED_SERVICES}
        self.applied = 0
        self.last_event_at = time.monotonic()

    @property
    def ready(self) -> bool:
        return all(event.is_set() for event in self._caught_up.values())

    async def start(self) -> None:
        js = self._nc.jetstream()
        for service in FOLLOWED_SERVICES:
            subscription = await js.subscribe(
                f"{self._prefix}.{service}.>",
                stream=self._stream,
                cb=self._handler(service),
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.ALL,
                idle_heartbeat=5.0,
            )
            info = await subscription.consumer_info()
            delivered = info.delivered.stream_seq if info.delivered else 0
            if info.num_pending == 0 and not delivered:
                self._caught_up[service].set()

    async def wait_ready(self, within_seconds: float) -> None:
        await asyncio.wait_for(
            asyncio.gather(*(event.wait() for event in self._caught_up.values())), within_seconds
        )

    def _handler(self, service: str) -> Callable[[Msg], Awaitable[None]]:
        caught_up = self._caught_up[service]

        async def on_message(msg: Msg) -> None:
            try:
                envelope = Envelope.from_json(msg.data)
                self._view.apply(envelope)
            except Exception:
                # One malformed event must not stop the feed; it is logged with its place.
                log.exception(
                    "feed_event_rejected", service=service, seq=msg.metadata.sequence.stream
                )
            else:
                self.applied += 1
                if self._on_event is not None:
                    self._on_event(envelope)

            self.last_event_at = time.monotonic()
            if not caught_up.is_set() and msg.metadata.num_pending == 0:
                caught_up.set()
                log.info("feed_caught_up", service=service, applied=self.applied)

        return on_message
