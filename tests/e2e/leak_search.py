"""Searching text for secrets, and keeping every answer a caller got so it can be searched.

A secret leaks when it, or any run of eight of its characters, shows up where it must not:
as text, or as the hex or base64 a byte column or an encoder would print. A gateway
token's first characters are its public display prefix, so runs inside it are no leak.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import httpx

from tests.e2e.leak_report import Leak, LeakFigure

# Any run of this many characters of a secret counts as a leak of it.
MIN_RUN = 8
# A gateway token's first characters are its display prefix, public by design.
TOKEN_DISPLAY_PREFIX = 12


@dataclass(frozen=True, slots=True)
class Canary:
    """A secret to hunt for, and the runs of it that count as a leak."""

    name: str
    value: str
    public_prefix: int = 0

    def needles(self) -> list[tuple[str, str]]:
        """(form, run) pairs: every leak of 8+ characters contains one of these runs."""
        raw = self.value.encode()
        runs = [("text", self.value[i : i + MIN_RUN]) for i in self._starts(MIN_RUN)]
        runs += [("hex", raw[i : i + MIN_RUN].hex()) for i in self._starts(MIN_RUN)]
        # 12 base64 characters encode 9 whole bytes; starting at every byte covers every
        # alignment, so base64 of any 11 bytes of the secret holds one of these runs.
        runs += [("base64", base64.b64encode(raw[i : i + 9]).decode()) for i in self._starts(9)]
        return runs

    def _starts(self, run: int) -> range:
        # A run that lies wholly inside the public prefix is no leak.
        return range(max(0, self.public_prefix - run + 1), len(self.value) - run + 1)


class Hunter:
    """Searches text for every canary and adds what it searched to the figure."""

    def __init__(self, canaries: list[Canary], figure: LeakFigure) -> None:
        self._needles = [(c.name, form, run) for c in canaries for form, run in c.needles()]
        self._figure = figure

    def search(self, kind: str, place: str, text: str) -> list[Leak]:
        """One leak per secret found in ``text``, showing where the first run of it was."""
        found: dict[str, Leak] = {}
        for name, form, run in self._needles:
            at = -1 if name in found else text.find(run)
            if at != -1:
                before, after = text[max(0, at - 40) : at], text[at + len(run) : at + len(run) + 40]
                excerpt = f"{before}<{form} run>{after}".replace("\n", "\\n")
                found[name] = Leak(name, place, form, excerpt)
        leaks = list(found.values())
        self._figure.searched(kind, leaks)
        return leaks


# Recording every answer the callers got


class RecordingTransport(httpx.AsyncBaseTransport):
    """Keeps every response, headers and whole body, before handing it to the caller."""

    def __init__(self, inner: httpx.AsyncBaseTransport, answers: list[tuple[str, str]]) -> None:
        self._inner = inner
        self._answers = answers

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        body = await response.aread()
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        label = f"{request.method} {request.url.path} -> {response.status_code}"
        self._answers.append((label, f"{headers}\n\n{body.decode('utf-8', errors='replace')}"))
        return httpx.Response(
            response.status_code, headers=response.headers, content=body, request=request
        )

    async def aclose(self) -> None:
        await self._inner.aclose()
