"""The console's settings, read once at start-up from ``BYOM_*`` variables.

The console holds no database and no service secret: it is a client of the public APIs
like any admin's script. Its one secret seals the session cookie.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A mounted Kubernetes Secret: one file per field, as every service reads it.
_SECRETS_DIR = Path(os.environ.get("BYOM_SECRETS_DIR", "/var/run/secrets/byom"))
_MIN_SESSION_SECRET_LENGTH = 32
_PLACEHOLDERS = frozenset({"changeme", "change-me", "secret", "placeholder", "dev-secret"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BYOM_",
        frozen=True,
        extra="ignore",
        secrets_dir=_SECRETS_DIR if _SECRETS_DIR.is_dir() else None,
        hide_input_in_errors=True,
    )

    environment: Literal["development", "test", "production"] = "production"
    # Seals the session cookie. Empty in development: a random one is made at start, so
    # sessions end when the process does.
    console_secret: SecretStr = SecretStr("")
    # How long a sign-in lasts; the gateway token inside may be revoked sooner.
    session_max_age_seconds: int = Field(default=8 * 3600, gt=60)
    # None: Secure when the request came over https (directly or per X-Forwarded-Proto).
    cookie_secure: bool | None = None
    access_url: str = "http://127.0.0.1:8003"
    keyvault_url: str = "http://127.0.0.1:8001"
    catalog_url: str = "http://127.0.0.1:8002"
    proxy_url: str = "http://127.0.0.1:8000"
    # A key check waits on the provider; keyvault gives it about this long too.
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    log_level: str = "INFO"
    log_json: bool | None = None

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Settings:
        secret = self.console_secret.get_secret_value()
        if self.environment == "development":
            return self

        if secret.lower() in _PLACEHOLDERS or len(secret) < _MIN_SESSION_SECRET_LENGTH:
            raise ValueError(
                "BYOM_CONSOLE_SECRET must be set to a random value of at least "
                f"{_MIN_SESSION_SECRET_LENGTH} characters outside development"
            )

        return self
