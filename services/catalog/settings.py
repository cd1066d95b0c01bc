"""The catalog's settings: the shared ones plus where keyvault is and how long providers get."""

from __future__ import annotations

from pydantic import Field

from shared.config import ServiceSettings


class Settings(ServiceSettings):
    """Read once at start-up from ``BYOM_*`` variables; frozen like every settings object."""

    # Where the catalog fetches a connection's provider key for a sync.
    keyvault_url: str = "http://127.0.0.1:8001"
    keyvault_timeout_seconds: float = Field(default=5.0, gt=0)
    # A whole model listing may take several pages; each request gets this long.
    provider_timeout_seconds: float = Field(default=10.0, gt=0)
