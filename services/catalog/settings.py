"""The catalog's settings: the shared ones plus where keyvault is, how long providers get,
how often connections are synced, where the model data file is, and what is high-cost."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from services.catalog.schedule import SyncSchedule
from shared.config import ServiceSettings


class Settings(ServiceSettings):
    """Read once at start-up from ``BYOM_*`` variables; frozen like every settings object."""

    # Where the catalog fetches a connection's provider key for a sync.
    keyvault_url: str = "http://127.0.0.1:8001"
    keyvault_timeout_seconds: float = Field(default=5.0, gt=0)
    # A whole model listing may take several pages; each request gets this long.
    provider_timeout_seconds: float = Field(default=10.0, gt=0)

    # Scheduled syncs. Each replica looks for due connections every poll (give or take
    # half), claims up to a batch, and syncs up to `concurrency` of them at once.
    sync_scheduled: bool = True
    sync_interval_seconds: float = Field(default=3600.0, gt=0)
    sync_jitter: float = Field(default=0.1, ge=0, le=0.5)
    sync_retry_base_seconds: float = Field(default=60.0, gt=0)
    sync_retry_max_seconds: float = Field(default=3600.0, gt=0)
    sync_poll_seconds: float = Field(default=15.0, gt=0)
    sync_batch: int = Field(default=20, ge=1, le=500)
    sync_concurrency: int = Field(default=4, ge=1, le=64)
    # A claimed sync not finished by then may be taken by another replica.
    sync_lease_seconds: float = Field(default=300.0, gt=0)

    # The operator's model data: extends (or, without the bundled file, replaces) it.
    model_data_file: Path | None = None
    model_data_include_bundled: bool = True

    # A model whose input or output price per million tokens reaches either threshold
    # is flagged high-cost wherever admins assign access.
    high_cost_input_per_million: float = Field(default=10.0, ge=0)
    high_cost_output_per_million: float = Field(default=30.0, ge=0)

    # The install operator's token: it alone lists the install's models and offers them to
    # workspaces. Empty (the default) turns those routes off.
    operator_token: SecretStr = SecretStr("")

    @property
    def sync_schedule(self) -> SyncSchedule:
        return SyncSchedule(
            interval_seconds=self.sync_interval_seconds,
            jitter=self.sync_jitter,
            retry_base_seconds=self.sync_retry_base_seconds,
            retry_max_seconds=self.sync_retry_max_seconds,
        )
