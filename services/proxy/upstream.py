"""Turning what a provider answered into what the member sees.

A provider's refusal is relayed with a fitting status in the caller's dialect, the
provider named, ``Retry-After`` kept so the official SDKs' own retries work, and its
message scrubbed of the provider key. A provider refusing the gateway's own key is a
problem for the workspace admin, not the member: it becomes a 502 that says so.
"""

from __future__ import annotations

import orjson
from starlette.responses import Response

from services.proxy.errors import openai_error
from shared.providers.scrubbing import scrub
from shared.secrets import ProviderKey

_EXCERPT_LIMIT = 300
_CLIENT_ERRORS = frozenset({400, 404, 409, 413, 415, 422})


def relay_error(
    provider: str, status: int, body: bytes, retry_after: str | None, key: ProviderKey
) -> Response:
    message = scrub(_upstream_message(body), key.reveal())[:_EXCERPT_LIMIT]
    headers = {"Retry-After": retry_after} if retry_after else None

    if status in (401, 403):
        return openai_error(
            502,
            f"The provider '{provider}' refused the gateway's credentials for this model. "
            "A workspace admin needs to check the provider connection.",
            type_="api_error",
            code="upstream_auth_failed",
        )

    if status == 429:
        return openai_error(
            429,
            f"The provider '{provider}' is rate limiting requests: {message}",
            type_="rate_limit_error",
            code="rate_limit_exceeded",
            headers=headers,
        )

    if status in _CLIENT_ERRORS:
        return openai_error(
            status,
            f"The provider '{provider}' refused the request: {message}",
            type_="invalid_request_error",
            code="upstream_bad_request",
        )

    return openai_error(
        503 if status == 503 else 502,
        f"The provider '{provider}' failed to answer (status {status}): {message}",
        type_="api_error",
        code="upstream_error",
        headers=headers,
    )


def _upstream_message(body: bytes) -> str:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:_EXCERPT_LIMIT].decode("utf-8", errors="replace").strip() or "no details"

    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])

    if isinstance(error, str):
        return error

    return "no details"
