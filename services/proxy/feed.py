"""Following the event stream into the proxy's view, and knowing when not to trust it.

The proxy keeps nothing on disk, so at start it reads the stream from the beginning
with ephemeral ordered consumers, one per producing service, and applies every event
to the view. It is ready once each consumer has caught up with what the stream held;
from then on events apply as they arrive, which is how a revocation reaches the hot
path within milliseconds.

A view that no longer hears the stream may be granting what an admin has since
revoked. A watchdog checks every consumer each second; when one cannot be reached it
is resubscribed from the next sequence it has not applied, and while the feed stays
lost for longer than the configured bound the proxy refuses to serve and says so in
its readiness probe. It recovers by itself when the feed returns.

nats-py is used directly here: an ordered push consumer is exactly this job, and the
proxy needs each message's sequence and pending count to resume and to know when it
has caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from services.proxy.view import View
from shared.events.envelope import Envelope

log = structlog.get_logger(__name__)

FOLLOWED_SERVICES = ("access", "catalog", "keyvault")
_CHECK_SECONDS = 1.0
_CHECK_TIMEOUT_SECONDS = 2.0


@dataclass
class _Follower:
    """One service's subject, and how far the view has applied it."""

    service: str
    caught_up: asyncio.Event
    subscription: JetStreamContext.PushSubscription | None = None
    last_sequence: int = 0


class Feed:
    """Applies the stream to the view, and tells whether the view can be trusted."""

    def __init__(
        self,
        nc: NatsClient,
        view: View,
        *,
        stream: str,
        subject_prefix: str,
        stale_after_seconds: float,
        on_event: Callable[[Envelope], None] | None = None,
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._view = view
        self._stream = stream
        self._prefix = subject_prefix
        self._stale_after = stale_after_seconds
        self._on_event = on_event
        self._followers = {s: _Follower(s, asyncio.Event()) for s in FOLLOWED_SERVICES}
        self._lost_since: float | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.applied = 0

    @property
    def ready(self) -> bool:
        return all(f.caught_up.is_set() for f in self._followers.values()) and not self.stale

    @property
    def stale(self) -> bool:
        """The feed has been lost for longer than the bound: the view may be out of date."""
        lost = self._lost_since
        return lost is not None and time.monotonic() - lost > self._stale_after

    @property
    def lost_for_seconds(self) -> float:
        return 0.0 if self._lost_since is None else time.monotonic() - self._lost_since

    async def start(self) -> None:
        for follower in self._followers.values():
            await self._subscribe(follower)
        self._watchdog = asyncio.create_task(self._watch(), name="feed-watchdog")

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog

    async def wait_ready(self, within_seconds: float) -> None:
        await asyncio.wait_for(
            asyncio.gather(*(f.caught_up.wait() for f in self._followers.values())),
            within_seconds,
        )

    async def _subscribe(self, follower: _Follower) -> None:
        resume = follower.last_sequence + 1
        config = (
            ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=resume)
            if follower.last_sequence
            else ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )
        follower.subscription = await self._js.subscribe(
            f"{self._prefix}.{follower.service}.>",
            stream=self._stream,
            cb=self._handler(follower),
            ordered_consumer=True,
            config=config,
            idle_heartbeat=5.0,
        )
        info = await follower.subscription.consumer_info()
        if info.num_pending == 0 and not follower.caught_up.is_set():
            delivered = info.delivered.stream_seq if info.delivered else 0
            if not delivered:
                follower.caught_up.set()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(_CHECK_SECONDS)
            healthy = self._nc.is_connected
            for follower in self._followers.values():
                if healthy:
                    healthy = await self._check(follower)
            self._note(healthy)

    async def _check(self, follower: _Follower) -> bool:
        """Whether the follower's consumer answers; a lost one is resubscribed."""
        subscription = follower.subscription
        if subscription is not None:
            try:
                await asyncio.wait_for(subscription.consumer_info(), _CHECK_TIMEOUT_SECONDS)
                return True
            except Exception as error:
                log.warning(
                    "feed_consumer_lost", service=follower.service, error=type(error).__name__
                )
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        try:
            await asyncio.wait_for(self._subscribe(follower), _CHECK_TIMEOUT_SECONDS)
        except Exception as error:
            log.warning(
                "feed_resubscribe_failed", service=follower.service, error=type(error).__name__
            )
            return False

        log.info(
            "feed_resubscribed", service=follower.service, from_sequence=follower.last_sequence + 1
        )
        return True

    def _note(self, healthy: bool) -> None:
        if healthy and self._lost_since is not None:
            log.info("feed_recovered", lost_for_seconds=round(self.lost_for_seconds, 2))
            self._lost_since = None
        elif not healthy and self._lost_since is None:
            self._lost_since = time.monotonic()
            log.error("feed_lost", stale_after_seconds=self._stale_after)

    def _handler(self, follower: _Follower) -> Callable[[Msg], Awaitable[None]]:
        async def on_message(msg: Msg) -> None:
            sequence = msg.metadata.sequence.stream
            if sequence <= follower.last_sequence:
                return

            try:
                envelope = Envelope.from_json(msg.data)
                self._view.apply(envelope)
            except Exception:
                # One malformed event must not stop the feed; it is logged with its place.
                log.exception("feed_event_rejected", service=follower.service, seq=sequence)
            else:
                self.applied += 1
                if self._on_event is not None:
                    self._on_event(envelope)

            follower.last_sequence = sequence
            if not follower.caught_up.is_set() and msg.metadata.num_pending == 0:
                follower.caught_up.set()
                log.info("feed_caught_up", service=follower.service, applied=self.applied)

        return on_message
