"""Short-lived credentials that services present to each other's internal routes.

A credential names the calling service and the audience it is meant for, expires after
a minute, and is signed with HMAC-SHA256 under the install's service secret. Member
and admin tokens are a different thing and are never accepted where this one is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import orjson

_PREFIX = "svc1."
DEFAULT_TTL_SECONDS = 60
_CLOCK_SKEW_SECONDS = 5


class InvalidServiceCredential(Exception):
    """The credential is missing, malformed, forged, expired, or meant for someone else."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ServiceSigner:
    """Mints and checks service credentials with one shared secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the service secret must be at least 32 bytes")

        self._secret = secret

    def mint(self, issuer: str, audience: str, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> str:
        now = int(time.time())
        claims = {"iss": issuer, "aud": audience, "iat": now, "exp": now + ttl_seconds}
        payload = _b64(orjson.dumps(claims))
        return f"{_PREFIX}{payload}.{self._sign(payload)}"

    def verify(self, credential: str, audience: str) -> str:
        """Return the calling service's name, or raise InvalidServiceCredential."""
        if not credential.startswith(_PREFIX):
            raise InvalidServiceCredential("not a service credential")

        payload, _, signature = credential.removeprefix(_PREFIX).partition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            raise InvalidServiceCredential("bad signature")

        try:
            claims = orjson.loads(_unb64(payload))
        except (ValueError, orjson.JSONDecodeError) as error:
            raise InvalidServiceCredential("unreadable claims") from error

        if claims.get("aud") != audience:
            raise InvalidServiceCredential("meant for another service")

        if int(claims.get("exp", 0)) + _CLOCK_SKEW_SECONDS < time.time():
            raise InvalidServiceCredential("expired")

        return str(claims.get("iss", ""))

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())
