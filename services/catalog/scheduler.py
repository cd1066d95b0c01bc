"""The scheduled sync: every catalog replica looks for due connections now and then,
claims a few, and syncs them.

When a connection is due is decided by each sync as it is recorded (``schedule``): an
interval after a good one, a growing and capped backoff after failures, each spread by
jitter. Which replica syncs it is decided by the claim (``Catalog.claim_due``), so
several replicas share the work and never sync one connection twice at once. A sync
that fails is a result recorded on the connection, never an exception that stops the
loop; anything else that goes wrong is logged and the loop carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from datetime import timedelta

import structlog

from services.catalog.handlers import Catalog, Claimed
from shared.events.envelope import utcnow

log = structlog.get_logger(__name__)


class SyncScheduler:
    """Runs claimed syncs, a few at a time, until stopped."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        poll_seconds: float,
        batch: int,
        concurrency: int,
        lease_seconds: float,
    ) -> None:
        self._catalog = catalog
        self._poll_seconds = poll_seconds
        self._batch = batch
        self._lease = timedelta(seconds=lease_seconds)
        self._slots = asyncio.Semaphore(concurrency)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self._run(), name="catalog-sync-scheduler")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_once(self) -> int:
        """Claim what is due now and sync it; how many connections were synced."""
        claimed = await self._catalog.claim_due(utcnow(), limit=self._batch, lease=self._lease)
        if claimed:
            await asyncio.gather(*(self._sync(c) for c in claimed))
        return len(claimed)

    async def _run(self) -> None:
        log.info("sync_scheduler_started", poll_seconds=self._poll_seconds)
        while True:
            try:
                synced = await self.run_once()
            except Exception:
                # The database may be away for a moment; the next round tries again.
                log.exception("sync_round_failed")
                synced = 0
            if synced < self._batch:
                # Replicas started together drift apart instead of polling in lockstep.
                await asyncio.sleep(self._poll_seconds * random.uniform(0.5, 1.5))  # noqa: S311 - jitter

    async def _sync(self, claimed: Claimed) -> None:
        async with self._slots:
            bound = structlog.contextvars.bound_contextvars(
                connection_id=claimed.connection_id, workspace_id=claimed.workspace_id
            )
            with bound:
                try:
                    result = await self._catalog.sync_claimed(claimed)
                except Exception:
                    # The claim lapses with its lease, and another round retries it.
                    log.exception("scheduled_sync_crashed")
                    return

                log.info("scheduled_sync_done", ok=result.ok, reason=result.reason)
