"""The laptop setup: every service on a SQLite file of its own, the same path end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import Infra
from tests.e2e.conftest import OpenAIFor
from tests.e2e.flows import ready_model
from tests.emulator import EmulatorState
from tests.stack import ALL_SERVICES, Stack, running_stack
from tests.support import Workspace, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    files = Path(tmp_path_factory.mktemp("sqlite"))
    per_service = {
        name: {"BYOM_DATABASE_URL": f"sqlite+aiosqlite:///{files / name}.db"}
        for name in ALL_SERVICES
    }
    with running_stack(
        database_url="postgresql://unused.invalid/never",
        nats_url=infra.nats_url,
        stream=infra.stream,
        subject_prefix=infra.prefix,
        log_dir=Path(tmp_path_factory.mktemp("sqlite-logs")),
        extra_env=per_service,
    ) as running:
        yield running


async def test_first_path_on_sqlite_files(
    openai_for: OpenAIFor,
    stack: Stack,
    workspace: Workspace,
    emulator: tuple[EmulatorState, str],
) -> None:
    """Connect, sync, enable, grant, call plain and streamed, and revoke, with every service on SQLite."""
    ready = await ready_model(stack, workspace, emulator)
    client = openai_for(ready.token)
    messages = [{"role": "user", "content": "hello from a laptop"}]

    answer = await client.chat.completions.create(model=ready.model["name"], messages=messages)
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    stream = await client.chat.completions.create(
        model=ready.model["name"], messages=messages, stream=True
    )
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    rules = await workspace.ok("GET", f"/access/v1/models/{ready.model['id']}/rules")
    for rule in rules["data"]:
        await workspace.ok("DELETE", f"/access/v1/models/{ready.model['id']}/rules/{rule['id']}")

    async def refused() -> bool:
        try:
            await client.chat.completions.create(model=ready.model["name"], messages=messages)
        except openai.PermissionDeniedError:
            return True
        return False

    await eventually(refused, within=5)
