"""The whole gateway running as separate processes, and a provider emulator beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import Infra
from tests.emulator import EmulatorState, running_emulator
from tests.stack import Stack
from tests.support import Workspace, gateway_client, new_workspace

OpenAIFor = Callable[[str], openai.AsyncOpenAI]


@pytest.fixture(scope="session")
async def emulator() -> AsyncIterator[tuple[EmulatorState, str]]:
    state = EmulatorState(models=["gpt-alpha", "gpt-beta", "gpt-gamma", "gpt-delta", "gpt-epsilon"])
    async with running_emulator(state) as base_url:
        yield state, base_url


@pytest.fixture(scope="module")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with infra.stack(
        log_dir=Path(tmp_path_factory.mktemp("service-logs")),
    ) as running:
        yield running


@pytest.fixture
async def gateway(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client({name: stack.url(name) for name in stack.services}) as client:
        yield client


@pytest.fixture
async def workspace(stack: Stack, gateway: httpx.AsyncClient) -> Workspace:
    """A workspace of the test's own, created by the install operator."""
    return await new_workspace(gateway, stack.operator_token, "acme")


@pytest.fixture
async def openai_for(stack: Stack) -> AsyncIterator[OpenAIFor]:
    """The official OpenAI SDK pointed at the gateway, one client per token, closed after the test."""
    clients: list[openai.AsyncOpenAI] = []

    def client(token: str) -> openai.AsyncOpenAI:
        made = openai.AsyncOpenAI(base_url=stack.openai_base_url, api_key=token, max_retries=0)
        clients.append(made)
        return made

    yield client
    for made in clients:
        await made.close()
