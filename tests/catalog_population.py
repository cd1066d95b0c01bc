"""A large catalog for the read API: thousands of models across many connections.

Rows are written straight into the catalog's tables, as a read-side fixture: syncing
thousands of models through an emulator would test the sync, not the list. The
connections are written as disconnected, so the scheduler leaves them alone.
Every model's traits follow from its number, so a test can count what a filter must find.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from services.catalog.domain import ModelDetails, Price
from services.catalog.tables import CONNECTION_DISCONNECTED, connections, detail_columns, models

PROVIDERS = ("openai", "anthropic", "google", "groq")


@dataclass(frozen=True, slots=True)
class Population:
    workspace_id: str
    count: int
    connection_ids: list[str]


def traits(n: int) -> tuple[str, bool, ModelDetails]:
    """Model number n's provider, enabled state and description."""
    provider = PROVIDERS[n % len(PROVIDERS)]
    enabled = n % 3 == 0
    price = None if n % 5 == 0 else Price(input=float(n % 40), output=float(n % 40) * 4)
    details = ModelDetails(
        display_name=f"Model {n}",
        context_window=8192 * (1 + n % 8),
        input_modalities=("text", "image") if n % 2 else ("text",),
        output_modalities=("text",),
        supports_tools=n % 4 != 0,
        price=price,
    )
    return provider, enabled, details


async def populate(
    engine: AsyncEngine, workspace_id: str, *, count: int, connections_count: int = 20
) -> Population:
    now = datetime.now(UTC)
    connection_ids = [str(uuid.uuid4()) for _ in range(connections_count)]
    async with engine.begin() as conn:
        await conn.execute(
            insert(connections),
            [
                {
                    "id": cid,
                    "workspace": workspace_id,
                    "provider": PROVIDERS[i % len(PROVIDERS)],
                    "name": f"conn-{i:03d}",
                    "base_url": "http://127.0.0.1:9/v1",
                    "status": CONNECTION_DISCONNECTED,
                    "sync_failures": 0,
                    "new_model_action": "disabled",
                    "new_model_group_ids": [],
                }
                for i, cid in enumerate(connection_ids)
            ],
        )
        rows = []
        for n in range(count):
            provider, enabled, details = traits(n)
            connection_index = n % connections_count
            rows.append(
                {
                    "id": str(uuid.uuid4()),
                    "workspace": workspace_id,
                    "connection": connection_ids[connection_index],
                    "upstream_id": f"model-{n:05d}",
                    "name": f"conn-{connection_index:03d}/model-{n:05d}",
                    "owned_by": provider,
                    "provider": provider,
                    "enabled": enabled,
                    "retired": False,
                    "discovered_at": now,
                    "updated_at": now,
                    **detail_columns(details),
                }
            )
        await conn.execute(insert(models), rows)
    return Population(workspace_id, count, connection_ids)
