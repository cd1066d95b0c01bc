"""A sync and a model switch at the same moment: they queue, they never deadlock."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from tests.conftest import Infra
from tests.e2e.flows import connect_provider, discovered_models, provider_key
from tests.emulator import EmulatorState
from tests.support import Workspace

pytestmark = pytest.mark.e2e


async def test_a_sync_waits_for_a_switched_row_without_holding_the_event_lock(
    infra: Infra, workspace: Workspace, emulator: tuple[EmulatorState, str]
) -> None:
    """While a switch holds a model's row, a sync that must update that row does not hold the events lock the switch needs next."""
    state = emulator[0]
    original = list(state.models)
    connection = await connect_provider(workspace, emulator, provider_key())
    models = await discovered_models(workspace, connection["id"], count=len(original))
    target = next(m for m in models if m["upstream_id"] == original[0])

    async with await psycopg.AsyncConnection.connect(infra.database_url) as switch:
        # The switch's first step: lock the model's row.
        await switch.execute(
            "SELECT 1 FROM catalog.models WHERE id = %s FOR UPDATE", [target["id"]]
        )

        # A sync that discovers a new model and retires the locked one.
        state.models = ["brand-new", *original[1:]]
        try:
            sync = asyncio.create_task(
                workspace.call("POST", f"/catalog/v1/connections/{connection['id']}/sync")
            )
            await asyncio.sleep(1.0)

            # The switch's second step: append its event. It must not find the lock taken.
            await switch.execute("SET lock_timeout = '3s'")
            await switch.execute("LOCK TABLE catalog.events IN EXCLUSIVE MODE")
            await switch.commit()
            response = await sync
        finally:
            state.models = original

    assert response.status_code == 200, response.text
    assert response.json()["retired"] == 1
