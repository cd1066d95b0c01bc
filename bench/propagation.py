"""How long an admin's change takes to reach the proxy: p50 and p99 over many runs.

Starts the four services on 127.0.0.1 (a database and a stream of their own on the local
PostgreSQL and NATS) and the provider emulator, makes a workspace with an enabled model,
then runs each case of ``tests/e2e/propagation.py`` N times: wait for the starting
state, make the change, and from the moment the admin's call returns, call the proxy
back to back until the first answer that shows the change (a refusal; for a grant, the
first success). Each run is undone before the next. Prints the figures, asserts none.

    .venv/bin/python bench/propagation.py [--repetitions 50] [--probe model|chat]

The probe is the call made back to back. ``model`` (the default) is
``GET /v1/models/{name}``, which runs the same authentication and access decision as a
chat call without the provider round trip; ``chat`` makes real chat calls, and the
figures then cannot be finer than one allowed chat call, which is printed first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.flows import connect_provider, discovered_models, provider_key  # noqa: E402
from tests.e2e.propagation import CASES, Lab, Probe, delay  # noqa: E402
from tests.emulator import EmulatorState, running_emulator  # noqa: E402
from tests.infra import NATS_URL, create_database, drop_database, random_suffix  # noqa: E402
from tests.stack import ALL_SERVICES, Stack, running_stack  # noqa: E402
from tests.support import Workspace, gateway_client, new_workspace  # noqa: E402

# A change slower than this is reported as a failure of the run, not waited for.
WITHIN_SECONDS = 10.0


def say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def percentile(values: list[float], percent: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


@contextlib.contextmanager
def local_stack(log_dir: Path) -> Iterator[Stack]:
    """The services on a database and a stream of their own, both gone afterwards."""
    suffix = random_suffix()
    database = f"byom_bench_{suffix}"
    stream = f"BYOMBENCH_{suffix.upper()}"
    # Tests run the services at DEBUG; a benchmark measures them as they run in production.
    quiet = {name: {"BYOM_LOG_LEVEL": "INFO"} for name in ALL_SERVICES}
    try:
        with running_stack(
            database_url=create_database(database),
            nats_url=NATS_URL,
            stream=stream,
            subject_prefix=f"byombench{suffix}",
            log_dir=log_dir,
            extra_env=quiet,
        ) as stack:
            yield stack
    finally:
        drop_database(database)
        asyncio.run(_delete_stream(stream))


async def _delete_stream(stream: str) -> None:
    nc = await nats.connect(NATS_URL)
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await nc.jetstream().delete_stream(stream)
    await nc.close()


async def workspace(stack: Stack, gateway: httpx.AsyncClient) -> Workspace:
    return await new_workspace(gateway, stack.operator_token, "bench")


async def measure(stack: Stack, repetitions: int, probe: Probe) -> None:
    state = EmulatorState(models=["gpt-bench"])
    async with (
        running_emulator(state) as base_url,
        gateway_client({name: stack.url(name) for name in stack.services}) as gateway,
        httpx.AsyncClient(base_url=stack.openai_base_url, timeout=30) as proxy,
    ):
        ws = await workspace(stack, gateway)
        connection = await connect_provider(ws, (state, base_url), provider_key())
        model = (await discovered_models(ws, connection["id"], count=1))[0]
        await ws.ok("POST", f"/catalog/v1/models/{model['id']}/enable")
        lab = Lab(ws, model, proxy)
        resolution = await round_trip(lab, probe)

        say(f"{repetitions} runs per change, probe: {probe}; delays in milliseconds")
        say(f"one allowed probe takes {resolution:.1f} ms (p50): the figures' resolution")
        say(f"{'change':<20} {'p50':>8} {'p99':>8} {'max':>8} {'mean':>8}")
        for make_case in CASES:
            case = await make_case(lab)
            delays = []
            for _ in range(repetitions):
                delays.append(await delay(lab, case, within=WITHIN_SECONDS, probe=probe) * 1000)
                await case.restore()
            say(
                f"{case.name:<20} {percentile(delays, 50):>8.1f} {percentile(delays, 99):>8.1f}"
                f" {max(delays):>8.1f} {statistics.fmean(delays):>8.1f}"
            )


async def round_trip(lab: Lab, probe: Probe, calls: int = 50) -> float:
    """The median time of one allowed call of the probe, in milliseconds."""
    member, token = await lab.newcomer()
    await lab.grant("user", member["id"])
    await lab.until(token, 200, within=WITHIN_SECONDS, probe=probe)
    took = []
    for _ in range(calls):
        started = time.perf_counter()
        await lab.status(token, probe)
        took.append((time.perf_counter() - started) * 1000)
    return statistics.median(took)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=50)
    parser.add_argument("--probe", choices=["chat", "model"], default="model")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="byom-bench-") as logs,
        local_stack(Path(logs)) as stack,
    ):
        asyncio.run(measure(stack, args.repetitions, args.probe))


if __name__ == "__main__":
    main()
