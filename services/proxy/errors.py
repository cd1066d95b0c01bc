"""Errors in the caller's dialect: OpenAI's error object for the OpenAI-style routes.

Every refusal the proxy makes, and every upstream failure it relays, leaves through
here. Upstream messages are scrubbed of the provider key before they are quoted, and
an upstream refusal of the gateway's own credentials is not blamed on the member.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from services.proxy.view import Refusal


def openai_error(
    status: int,
    message: str,
    *,
    type_: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "error": {"message": message, "type": type_, "param": param, "code": code}
    }
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def unauthenticated() -> Response:
    return openai_error(
        401,
        "Invalid gateway token. Pass a token issued by your gateway admin as "
        "'Authorization: Bearer <token>'.",
        type_="invalid_request_error",
        code="invalid_api_key",
    )


def refused(refusal: Refusal, model_name: str) -> Response:
    if refusal is Refusal.NOT_GRANTED:
        return openai_error(
            403,
            f"You do not have access to the model '{model_name}'. Ask a workspace admin for access.",
            type_="permission_error",
            code="model_not_permitted",
            param="model",
        )

    if refusal is Refusal.MODEL_RETIRED:
        return openai_error(
            404,
            f"The model '{model_name}' has been retired and can no longer be called.",
            type_="invalid_request_error",
            code="model_retired",
            param="model",
        )

    # Unknown, disabled, and disconnected look the same to a member: the model is not
    # there for them, and a member should not learn what an admin has set up but not offered.
    return openai_error(
        404,
        f"The model '{model_name}' does not exist or is not available.",
        type_="invalid_request_error",
        code="model_not_found",
        param="model",
    )


def bad_request(message: str, *, param: str | None = None) -> Response:
    return openai_error(400, message, type_="invalid_request_error", code=None, param=param)


def upstream_unavailable(provider: str, reason: str, *, status: int = 502) -> Response:
    return openai_error(
        status,
        f"The provider '{provider}' could not be reached: {reason}.",
        type_="api_error",
        code="upstream_unavailable",
    )


def feed_lost(lost_for_seconds: float) -> Response:
    return openai_error(
        503,
        "The gateway has lost its feed of access changes for "
        f"{lost_for_seconds:.0f}s and will not serve on permissions that may be out of date. "
        "Retry shortly.",
        type_="api_error",
        code="gateway_feed_lost",
        headers={"Retry-After": "5"},
    )


def too_large(limit: int) -> Response:
    return openai_error(
        413,
        f"The request body is larger than this gateway accepts ({limit // (1024 * 1024)} MiB).",
        type_="invalid_request_error",
        code="request_too_large",
    )


def method_not_allowed(allowed: str) -> Response:
    return openai_error(
        405,
        f"This route accepts {allowed} only.",
        type_="invalid_request_error",
        code="method_not_allowed",
        headers={"Allow": allowed},
    )
