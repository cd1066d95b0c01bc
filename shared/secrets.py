"""Types that carry key material without letting it leak by accident.

A provider key or a gateway token travels inside one of these wrappers from the moment
it is read until the one place that needs the plain value calls ``reveal()``. Their
``repr`` and ``str`` show only a masked form, so a stray log line, exception message or
f-string prints the mask, never the secret.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final, NoReturn

_MIN_LENGTH_TO_SHOW_ENDS: Final = 16
_PREFIX_LENGTH: Final = 3
_SUFFIX_LENGTH: Final = 4


def mask(value: str) -> str:
    """A short prefix and the last four characters; short values are hidden whole."""
    if len(value) < _MIN_LENGTH_TO_SHOW_ENDS:
        return "****"

    return f"{value[:_PREFIX_LENGTH]}…{value[-_SUFFIX_LENGTH:]}"


class Secret:
    """A secret string whose every printable form is masked."""

    __slots__ = ("_value",)

    # Whether the empty string is a value of this kind of secret, meaning "none given".
    may_be_empty: bool = False

    def __init__(self, value: str) -> None:
        if not value and not self.may_be_empty:
            raise ValueError("a secret cannot be empty")

        self._value = value

    def __bool__(self) -> bool:
        return bool(self._value)

    def reveal(self) -> str:
        return self._value

    @property
    def masked(self) -> str:
        return mask(self._value) if self._value else "(none)"

    def fingerprint(self, fingerprint_key: bytes) -> str:
        """A keyed digest: equal secrets match, yet it cannot be brute-forced offline."""
        digest = hmac.new(fingerprint_key, self._value.encode(), hashlib.sha256).hexdigest()
        return f"hmac-sha256:{digest[:32]}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.masked!r})"

    def __str__(self) -> str:
        return self.masked

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented

        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("secrets are not pickled")


class ProviderKey(Secret):
    """An API key of a model provider, as pasted by a workspace admin.

    Empty for a server that takes no key (a local vLLM or Ollama): adapters then send no
    credential at all, and scrubbing has nothing to hide.
    """

    may_be_empty = True

    @classmethod
    def none(cls) -> ProviderKey:
        return cls("")


class GatewayToken(Secret):
    """A member's token for the gateway itself."""
