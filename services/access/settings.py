"""The access service's settings, read once at start-up from ``BYOM_*`` variables."""

from __future__ import annotations

from pydantic import SecretStr, model_validator

from shared.config import ServiceSettings

_MIN_OPERATOR_TOKEN_LENGTH = 24
_PLACEHOLDERS = frozenset({"changeme", "change-me", "secret", "placeholder", "operator"})


class Settings(ServiceSettings):
    # Held by whoever runs the install; the only credential that may create a workspace.
    # Empty in development disables workspace creation rather than opening it.
    operator_token: SecretStr = SecretStr("")

    @model_validator(mode="after")
    def _refuse_weak_operator_token(self) -> Settings:
        token = self.operator_token.get_secret_value()
        if self.environment == "development" and not token:
            return self

        if token.lower() in _PLACEHOLDERS or len(token) < _MIN_OPERATOR_TOKEN_LENGTH:
            raise ValueError(
                "BYOM_OPERATOR_TOKEN must be a random value of at least "
                f"{_MIN_OPERATOR_TOKEN_LENGTH} characters"
            )

        return self
