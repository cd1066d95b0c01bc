"""The console's session: a sealed cookie, and the CSRF token bound to it.

The session is the console's only state, and it lives in the browser: a Fernet token
(AES with an HMAC, timestamped) holding the signed-in person's gateway token and a random
CSRF token. The browser cannot read it (HttpOnly) or send it from another site
(SameSite=Strict); the console cannot be made to act by a page elsewhere, because every
POST must also carry the CSRF token, which only the console's own pages know.

A visitor who has not signed in still gets a session, holding a CSRF token only, so the
sign-in form is protected like every other.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from dataclasses import dataclass

import orjson
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.requests import Request
from starlette.responses import Response

from shared.secrets import GatewayToken

COOKIE_NAME = "byom_console"
COOKIE_PATH = "/console/"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True, slots=True)
class Session:
    csrf: str
    token: GatewayToken | None = None

    @property
    def signed_in(self) -> bool:
        return self.token is not None

    @classmethod
    def anonymous(cls) -> Session:
        return cls(csrf=secrets.token_urlsafe(32))

    def signed_in_as(self, token: GatewayToken) -> Session:
        # A fresh CSRF token at sign-in: one learnt before it is worth nothing after.
        return Session(csrf=secrets.token_urlsafe(32), token=token)

    def accepts(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf)


class SessionSeal:
    """Seals sessions into cookie values and opens them again, or refuses them."""

    def __init__(self, secret: bytes, *, max_age_seconds: int, secure: bool | None) -> None:
        self._fernet = Fernet(_session_key(secret))
        self._max_age = max_age_seconds
        self._secure = secure

    def open(self, request: Request) -> Session | None:
        """The request's session, or None if it has none, or a forged or expired one."""
        sealed = request.cookies.get(COOKIE_NAME)
        if not sealed:
            return None

        try:
            payload = orjson.loads(self._fernet.decrypt(sealed.encode(), ttl=self._max_age))
        except (InvalidToken, orjson.JSONDecodeError):
            return None

        token = payload.get("token")
        csrf = payload.get("csrf")
        if not isinstance(csrf, str) or not (token is None or isinstance(token, str)):
            return None

        return Session(csrf=csrf, token=GatewayToken(token) if token else None)

    def store(self, response: Response, request: Request, session: Session) -> None:
        payload = {"csrf": session.csrf, "token": session.token.reveal() if session.token else None}
        sealed = self._fernet.encrypt(orjson.dumps(payload)).decode()
        response.set_cookie(
            COOKIE_NAME,
            sealed,
            max_age=self._max_age,
            path=COOKIE_PATH,
            httponly=True,
            secure=self._is_secure(request),
            samesite="strict",
        )

    def _is_secure(self, request: Request) -> bool:
        if self._secure is not None:
            return self._secure

        # Behind a TLS-terminating Ingress the console itself is reached over plain http.
        forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        return request.url.scheme == "https" or forwarded == "https"


def _session_key(secret: bytes) -> bytes:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"byom-console-session-v1"
    ).derive(secret)
    return base64.urlsafe_b64encode(derived)
