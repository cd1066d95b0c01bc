"""The console's one adapter: the gateway's public APIs, called with the viewer's token.

Every page reads and every action writes through here, over the same routes and with the
same token a REST user would send, so the console can do nothing its user could not do
with curl. Answers other than success become exceptions that carry words a person can
read, never a raw body:

    ConsoleError
    ├── SignedOut       the token is not (or no longer) valid: sign in again
    ├── Refused         the service said no (4xx), and said why
    └── Unavailable     the service did not answer, or failed (5xx, network)
"""

from __future__ import annotations

import time
from typing import Any, Final, Literal

import httpx
import orjson
import structlog

from shared.secrets import GatewayToken

log = structlog.get_logger(__name__)

Service = Literal["access", "keyvault", "catalog", "proxy"]
Json = Any

_SERVICE_WORDS: Final[dict[Service, str]] = {
    "access": "The people and access service",
    "keyvault": "The provider key service",
    "catalog": "The model catalog",
    "proxy": "The model gateway",
}


# A guard against a cursor that never ends; at the catalog's page size, far more models than
# any workspace has.
_MAX_PAGES: Final = 100


class ConsoleError(Exception):
    """Something a page cannot do; ``message`` is fit to show as it is.

    ``code`` and ``reason`` are the service's own error code and message, for pages that
    word a particular refusal their own way.
    """

    def __init__(self, message: str, *, status: int = 0, code: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.reason = reason


class SignedOut(ConsoleError):
    pass


class Refused(ConsoleError):
    pass


class Unavailable(ConsoleError, ConnectionError):
    pass


class Gateway:
    """The public APIs of access, keyvault, catalog and the proxy, at their base URLs."""

    def __init__(self, client: httpx.AsyncClient, urls: dict[Service, str]) -> None:
        self._client = client
        self._urls = {name: url.rstrip("/") for name, url in urls.items()}

    async def get(
        self, token: GatewayToken, service: Service, path: str, **params: str | int
    ) -> Json:
        return await self.call(token, "GET", service, path, params=params)

    async def every_page(
        self, token: GatewayToken, service: Service, path: str, **params: str | int
    ) -> list[Json]:
        """Every item of a list that pages by ``next_cursor``, one page after another."""
        items: list[Json] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = await self.get(
                token, service, path, **params, **({"cursor": cursor} if cursor else {})
            )
            items.extend(page["data"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items

        raise Unavailable(f"{_SERVICE_WORDS[service]} listed more than the console can show.")

    async def post(
        self, token: GatewayToken, service: Service, path: str, body: Json | None = None
    ) -> Json:
        return await self.call(token, "POST", service, path, body=body)

    async def put(
        self, token: GatewayToken, service: Service, path: str, body: Json | None = None
    ) -> Json:
        return await self.call(token, "PUT", service, path, body=body)

    async def delete(self, token: GatewayToken, service: Service, path: str) -> Json:
        return await self.call(token, "DELETE", service, path)

    async def call(
        self,
        token: GatewayToken,
        method: str,
        service: Service,
        path: str,
        *,
        params: dict[str, str | int] | None = None,
        body: Json | None = None,
    ) -> Json:
        started = time.perf_counter()
        try:
            response = await self._client.request(
                method,
                self._urls[service] + path,
                params=params or None,
                content=orjson.dumps(body) if body is not None else None,
                headers={
                    "Authorization": f"Bearer {token.reveal()}",
                    **({"Content-Type": "application/json"} if body is not None else {}),
                },
            )
        except httpx.HTTPError as error:
            log.warning(
                "gateway_call_failed", service=service, method=method, error=type(error).__name__
            )
            raise Unavailable(
                f"{_SERVICE_WORDS[service]} is not answering. Try again in a moment."
            ) from None

        log.debug(
            "gateway_call",
            service=service,
            method=method,
            status=response.status_code,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return _answer(service, response)


def _answer(service: Service, response: httpx.Response) -> Json:
    if response.is_success:
        return orjson.loads(response.content) if response.content else None

    status = response.status_code
    code, reason = _error_of(response)
    if status == 401:
        raise SignedOut("Your sign-in has ended: the token was revoked or has expired.")

    if status >= 500 or status == 429:
        words = sentence(reason or "it failed")
        raise Unavailable(
            f"{_SERVICE_WORDS[service]} could not do that. {words}",
            status=status,
            code=code,
            reason=reason,
        )

    if status == 403 and code == "forbidden":
        raise Refused("Only workspace admins can do this.", status=status, code=code, reason=reason)

    words = sentence(reason or "the request was refused")
    raise Refused(words, status=status, code=code, reason=reason)


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """The code and message of the gateway's error shapes (admin APIs and the model API)."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return "unknown", ""

    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "unknown", ""

    code = error.get("code")
    message = error.get("message")
    return (
        code if isinstance(code, str) else "unknown",
        message if isinstance(message, str) else "",
    )


def sentence(text: str) -> str:
    """The text with a capital first letter and a full stop."""
    text = text.strip()
    if not text:
        return text

    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
