"""Errors in the caller's dialect: OpenAI's error object, or Anthropic's.

Every refusal the proxy makes, and every upstream failure it relays, leaves through a
:class:`Dialect`: the OpenAI-style routes speak :data:`OPENAI`, the Anthropic-style
routes :data:`ANTHROPIC`. Both say the same thing with the same status; only the shape
differs, so the official SDKs of either family raise their own typed errors.

Upstream failures arrive already scrubbed of the provider key (see
:mod:`shared.providers.failures`) and are rendered by :mod:`shared.translation.errors`,
which also holds the status policy; an upstream refusal of the gateway's own credentials
is not blamed on the member.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from starlette.responses import Response

from services.proxy.view import Refusal, Retired
from shared.logging import scrub
from shared.providers import UnsupportedFeature, UpstreamFailure
from shared.translation import (
    ErrorReply,
    anthropic_failure,
    anthropic_unsupported,
    openai_failure,
    openai_unsupported,
)

# Anthropic names its error types after what went wrong; OpenAI's types are coarser.
_ANTHROPIC_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(payload), status_code=status, media_type="application/json", headers=headers
    )


class Dialect:
    """How one family of clients expects to hear that something went wrong."""

    name = "openai"

    def error(
        self,
        status: int,
        message: str,
        *,
        type_: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
        return json_response(body, status, headers)

    def failure(self, failure: UpstreamFailure, provider: str) -> Response:
        """An upstream failure, the provider named by the connection's name."""
        return reply(openai_failure(failure, provider))

    def unsupported(self, error: UnsupportedFeature) -> Response:
        return reply(openai_unsupported(error))

    def unauthenticated(self) -> Response:
        return self.error(
            401,
            "Invalid gateway token. Pass a token issued by your gateway admin as "
            "'Authorization: Bearer <token>'.",
            type_="invalid_request_error",
            code="invalid_api_key",
        )

    def refused(self, refusal: Refusal | Retired, model_name: str) -> Response:
        # A caller may put a token where the name goes; never send a credential back.
        model_name = scrub(model_name)
        if isinstance(refusal, Retired):
            successor = (
                f" Use its successor, '{refusal.successor}', instead."
                if refusal.successor
                else " Its provider named no successor."
            )
            named = (
                f"The alias '{model_name}' points at '{refusal.alias_of}', which"
                if refusal.alias_of
                else f"The model '{model_name}'"
            )
            return self.error(
                404,
                f"{named} has been retired by its provider and can no longer be called.{successor}",
                type_="invalid_request_error",
                code="model_retired",
                param="model",
            )

        if refusal is Refusal.NOT_GRANTED:
            return self.error(
                403,
                f"You do not have access to the model '{model_name}'. "
                "Ask a workspace admin for access.",
                type_="permission_error",
                code="model_not_permitted",
                param="model",
            )

        if refusal is Refusal.SOURCE_EXCLUDED:
            return self.error(
                403,
                f"The model '{model_name}' is not among the models this workspace uses: it "
                "allows only its own models, or only those the gateway's operator manages. "
                "Ask a workspace admin.",
                type_="permission_error",
                code="model_source_not_allowed",
                param="model",
            )

        if refusal is Refusal.PRICE_UNKNOWN:
            return self.error(
                403,
                f"The model '{model_name}' has no known price, and this workspace does not "
                "allow models without one. Ask a workspace admin to have it priced or to "
                "allow unpriced models.",
                type_="permission_error",
                code="model_price_unknown",
                param="model",
            )

        # Unknown, disabled, and disconnected look the same to a member: the model is not
        # there for them, and a member should not learn what an admin has set up but not offered.
        return self.error(
            404,
            f"The model '{model_name}' does not exist or is not available.",
            type_="invalid_request_error",
            code="model_not_found",
            param="model",
        )

    def bad_request(self, message: str, *, param: str | None = None) -> Response:
        return self.error(400, message, type_="invalid_request_error", param=param)

    def not_offered(self, message: str, *, param: str) -> Response:
        """A request the model's provider has no API for through this gateway."""
        return self.error(
            400, message, type_="invalid_request_error", code="unsupported_feature", param=param
        )

    def key_unavailable(self, provider: str) -> Response:
        return self.error(
            503,
            f"The provider '{provider}' could not be reached: its key is unavailable.",
            type_="api_error",
            code="upstream_unavailable",
        )

    def feed_lost(self, lost_for_seconds: float) -> Response:
        return self.error(
            503,
            "The gateway has lost its feed of access changes for "
            f"{lost_for_seconds:.0f}s and will not serve on permissions that may be out of "
            "date. Retry shortly.",
            type_="api_error",
            code="gateway_feed_lost",
            headers={"Retry-After": "5"},
        )

    def too_large(self, limit: int) -> Response:
        return self.error(
            413,
            f"The request body is larger than this gateway accepts ({limit // (1024 * 1024)} MiB).",
            type_="invalid_request_error",
            code="request_too_large",
        )

    def method_not_allowed(self, allowed: str) -> Response:
        return self.error(
            405,
            f"This route accepts {allowed} only.",
            type_="invalid_request_error",
            code="method_not_allowed",
            headers={"Allow": allowed},
        )

    def unknown_route(self, method: str, path: str) -> Response:
        return self.error(
            404,
            f"Unknown route {method} {path}.",
            type_="invalid_request_error",
            code="unknown_route",
        )

    def starting(self) -> Response:
        return self.error(503, "The gateway is starting.", type_="api_error", code="starting")

    def internal(self) -> Response:
        return self.error(
            500,
            "The gateway failed to handle this request.",
            type_="api_error",
            code="internal_error",
        )


class AnthropicDialect(Dialect):
    """Anthropic's ``{"type": "error", "error": {"type", "message"}}``, typed by status."""

    name = "anthropic"

    def error(
        self,
        status: int,
        message: str,
        *,
        type_: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        # Anthropic's object has no "param": the field leads the message, as Anthropic does.
        if param is not None and not message.startswith(param):
            message = f"{param}: {message}"
        error_type = _ANTHROPIC_TYPES.get(
            status, "invalid_request_error" if status < 500 else "api_error"
        )
        body = {"type": "error", "error": {"type": error_type, "message": message}}
        return json_response(body, status, headers)

    def failure(self, failure: UpstreamFailure, provider: str) -> Response:
        return reply(anthropic_failure(failure, provider))

    def unauthenticated(self) -> Response:
        # Anthropic's clients send their key as x-api-key: say so in their terms.
        return self.error(
            401,
            "Invalid gateway token. Pass a token issued by your gateway admin as "
            "'x-api-key: <token>' (or 'Authorization: Bearer <token>').",
            type_="authentication_error",
        )

    def unsupported(self, error: UnsupportedFeature) -> Response:
        return reply(anthropic_unsupported(error))


OPENAI: Final = Dialect()
ANTHROPIC: Final = AnthropicDialect()


def reply(answer: ErrorReply) -> Response:
    return json_response(answer.body, answer.status, answer.headers or None)
