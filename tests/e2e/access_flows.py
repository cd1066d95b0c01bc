"""Steps the access end-to-end tests share: a real call at the proxy and its outcome."""

from __future__ import annotations

import time
from typing import Literal

import httpx

from tests.stack import Stack
from tests.support import eventually

Header = Literal["bearer", "x-api-key"]
MESSAGES = [{"role": "user", "content": "hello"}]


def token_headers(token: str, header: Header = "bearer") -> dict[str, str]:
    if header == "x-api-key":
        return {"x-api-key": token}

    return {"Authorization": f"Bearer {token}"}


async def chat_status(stack: Stack, token: str, model: str, header: Header = "bearer") -> int:
    """The status of one real chat call through the proxy."""
    async with httpx.AsyncClient(base_url=stack.openai_base_url, timeout=30) as client:
        response = await client.post(
            "/chat/completions",
            json={"model": model, "messages": MESSAGES},
            headers=token_headers(token, header),
        )
    return response.status_code


async def settles_to(
    stack: Stack, token: str, model: str, status: int, *, within: float = 10.0
) -> float:
    """Wait until calls answer ``status``; how long that took, in seconds."""
    started = time.monotonic()

    async def reached() -> bool:
        return await chat_status(stack, token, model) == status

    await eventually(reached, within=within, interval=0.01)
    return time.monotonic() - started
