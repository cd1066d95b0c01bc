"""The proxy's settings."""

from __future__ import annotations

from pydantic import Field

from shared.config import ServiceSettings


class Settings(ServiceSettings):
    keyvault_url: str = "http://127.0.0.1:8001"
    # Usage records waiting for NATS; past this bound they are dropped and counted.
    usage_queue_capacity: int = Field(default=10_000, ge=1)
    upstream_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    upstream_read_timeout_seconds: float = Field(default=300.0, gt=0)
    # Open connections to one provider host; calls beyond wait (within the connect timeout).
    upstream_max_connections: int = Field(default=1000, ge=1)
    # How long start-up waits for the view to catch up with the stream before serving.
    feed_ready_timeout_seconds: float = Field(default=60.0, gt=0)
    # Past this long without the event feed, the view may grant what was revoked: stop serving.
    feed_stale_after_seconds: float = Field(default=30.0, gt=0)
    # A chat request larger than this is refused with 413 before it is read further.
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
