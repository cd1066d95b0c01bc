"""How fast the catalog's model list answers on a large catalog: pages, deep pages, filters.

    python bench/catalog_list.py                  # a throwaway SQLite file
    python bench/catalog_list.py --postgres       # a throwaway database on BYOM_TEST_POSTGRES

Fills one workspace with ``--models`` models over twenty connections, straight into the
catalog's tables, then times the queries the admin API runs (no HTTP in between) and
prints the median and worst of several runs for each. Nothing is asserted: the figures
are for reading.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.catalog import views
from services.catalog.tables import metadata
from shared.config import normalise_database_url
from shared.db import create_engine, create_schema
from tests.catalog_population import populate
from tests.infra import create_database, drop_database, random_suffix

RUNS = 20
THRESHOLDS = views.CostThresholds(10.0, 30.0)


async def bench(url: str, count: int) -> None:
    engine = create_engine(url, schema="catalog")
    try:
        await create_schema(engine, metadata)
        started = time.perf_counter()
        population = await populate(engine, str(uuid.uuid4()), count=count)
        print(
            f"{count} models written in {time.perf_counter() - started:.1f}s ({url.split(':')[0]})"
        )
        workspace = population.workspace_id

        async with engine.connect() as conn:
            middle = await views.list_models(conn, workspace, THRESHOLDS, limit=count // 2)
        deep_cursor = middle.next_cursor

        async def page(criteria: views.ModelFilter, cursor: str | None = None) -> None:
            async with engine.connect() as conn:
                await views.list_models(
                    conn, workspace, THRESHOLDS, criteria, limit=100, cursor=cursor
                )

        cases: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("first page of 100", lambda: page(views.ModelFilter())),
            ("page of 100 halfway through", lambda: page(views.ModelFilter(), deep_cursor)),
            ("provider=anthropic", lambda: page(views.ModelFilter(provider="anthropic"))),
            (
                "capability=vision, enabled",
                lambda: page(views.ModelFilter(capability="vision", enabled=True)),
            ),
            ("name contains '0042'", lambda: page(views.ModelFilter(query="0042"))),
            ("high_cost", lambda: page(views.ModelFilter(high_cost=True))),
            ("price_unknown", lambda: page(views.ModelFilter(price_unknown=True))),
        ]
        for label, run in cases:
            timings = []
            for _ in range(RUNS):
                begun = time.perf_counter()
                await run()
                timings.append((time.perf_counter() - begun) * 1000)
            print(
                f"  {label:32} median {statistics.median(timings):6.2f} ms   worst {max(timings):6.2f} ms"
            )
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=5000)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()

    if not args.postgres:
        with tempfile.TemporaryDirectory() as directory:
            asyncio.run(bench(f"sqlite+aiosqlite:///{directory}/catalog.db", args.models))
        return

    name = f"byom_bench_{random_suffix()}"
    url = create_database(name)
    try:
        asyncio.run(bench(normalise_database_url(url), args.models))
    finally:
        drop_database(name)


if __name__ == "__main__":
    main()
