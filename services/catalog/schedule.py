"""When a connection is synced next: the catalog's schedule rules, free of frameworks.

After a good sync the next one is due one interval later; after a failed one, sooner at
first and then less and less often (exponential backoff, capped), so a revoked key or a
provider that is down is retried without being hammered. Every delay is spread by a
random fraction (the jitter), so a thousand connections created in the same minute, or
all retried after the same outage, do not all sync in the same minute again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class SyncSchedule:
    """How often connections are synced, and how failures back off."""

    interval_seconds: float = 3600.0
    # Each delay is multiplied by a factor drawn from [1 - jitter, 1 + jitter].
    jitter: float = 0.1
    retry_base_seconds: float = 60.0
    retry_max_seconds: float = 3600.0

    def delay_seconds(self, consecutive_failures: int, spread: float) -> float:
        """The wait before the next sync; ``spread`` is a random draw from [-1, 1]."""
        if consecutive_failures <= 0:
            base = self.interval_seconds
        else:
            # 2**n overflows a float long before it matters; the cap is reached by n = 64.
            doublings = min(consecutive_failures - 1, 64)
            base = min(self.retry_base_seconds * 2**doublings, self.retry_max_seconds)
        spread = max(-1.0, min(1.0, spread))
        return base * (1 + self.jitter * spread)

    def next_sync_at(self, after: datetime, consecutive_failures: int, spread: float) -> datetime:
        return after + timedelta(seconds=self.delay_seconds(consecutive_failures, spread))
