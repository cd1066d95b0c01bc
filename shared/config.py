"""Settings every service shares, read once from the environment at start-up.

Each service subclasses :class:`ServiceSettings` with its own fields and its own
environment prefix. Values come from ``BYOM_*`` variables, or from files in the secrets
directory (a mounted Kubernetes Secret: one file per field). Settings objects are
frozen: state that changes at run time lives in objects built at start, not here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["development", "test", "production"]

# A mounted Kubernetes Secret: one file per field. Absent on a laptop, and then unused.
_SECRETS_DIR = Path(os.environ.get("BYOM_SECRETS_DIR", "/var/run/secrets/byom"))

_PLACEHOLDERS = frozenset({"", "changeme", "change-me", "secret", "placeholder", "dev-secret"})
_MIN_SERVICE_SECRET_LENGTH = 32


def normalise_database_url(url: str) -> str:
    """Point plain PostgreSQL URLs at the psycopg 3 async driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)

    return url


class ServiceSettings(BaseSettings):
    """What every service needs: where its database and NATS are, and who it is."""

    model_config = SettingsConfigDict(
        env_prefix="BYOM_",
        frozen=True,
        extra="ignore",
        secrets_dir=_SECRETS_DIR if _SECRETS_DIR.is_dir() else None,
        # A validation error would otherwise print the raw input: secrets and keyrings.
        hide_input_in_errors=True,
    )

    environment: Environment = "production"
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/byom"
    nats_url: str = "nats://127.0.0.1:4222"
    nats_stream: str = "BYOM"
    # Production runs three; the stream is only created with this when it is missing.
    nats_stream_replicas: int = Field(default=1, ge=1, le=5)
    subject_prefix: str = "byom"
    # Signs the short-lived credentials services present to each other's internal routes.
    service_secret: SecretStr = SecretStr("")
    log_level: str = "INFO"
    log_json: bool | None = None
    relay_poll_seconds: float = Field(default=0.5, gt=0)
    consumer_ack_wait_seconds: float = Field(default=30.0, gt=0)
    # Where admin and member tokens are checked: the access service's base URL.
    access_url: str = "http://127.0.0.1:8003"

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str) -> str:
        return normalise_database_url(value)

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> ServiceSettings:
        secret = self.service_secret.get_secret_value()
        if self.environment == "development":
            return self

        if secret.lower() in _PLACEHOLDERS or len(secret) < _MIN_SERVICE_SECRET_LENGTH:
            raise ValueError(
                "BYOM_SERVICE_SECRET must be set to a random value of at least "
                f"{_MIN_SERVICE_SECRET_LENGTH} characters outside development"
            )

        return self
