"""The key-leak hunt: plant canaries, drive every path that touches them, search everything.

A canary provider key (shaped like no known provider's key, so no pattern-based redaction
can hide it by luck) and canary gateway tokens are planted through the real APIs. The
hunt then drives every path that touches them: connecting, a provider echoing a refused
key, rotation to and from the canary, proxy calls plain and streamed through every door
(OpenAI chat, responses and embeddings, Anthropic messages), upstream refusals, rate
limits, failures, garbage and timeouts with the key echoed back, keyvault going away,
rewrapping, disconnecting and revoking, all with every service logging at DEBUG.

Then every place a secret could end up is searched for each secret, and for every run of
eight of its characters (as text, hex and base64): each service's log, every event in
every service's events table and on the NATS stream, every response and error the callers
got, every trace span, every service's metrics, every table of every schema, and what the
rewrap command printed. The figure (paths exercised, places searched, leaks found) is
printed in the run's summary (``tests/e2e/leak_report.py``).

Places where a secret belongs are not searched: the request that pasted it, the provider
(the emulator), the one response that shows a new gateway token, and a gateway token's
public display prefix (its first 12 characters, shown in token lists by design).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import nats
import orjson
import psycopg
import pytest
from nats.js.api import DeliverPolicy

from tests.conftest import Infra
from tests.e2e.leak_paths import MESSAGES, READ_TIMEOUT_SECONDS, Driver, Hunt
from tests.e2e.leak_report import Leak, LeakFigure, figure_for
from tests.e2e.leak_search import TOKEN_DISPLAY_PREFIX, Canary, Hunter
from tests.emulator import EmulatorState, running_emulator
from tests.stack import Stack
from tests.support import eventually, gateway_client

pytestmark = pytest.mark.e2e


# The stack, with a proxy that gives up on a slow provider quickly


@pytest.fixture(scope="module")
async def emulator() -> AsyncIterator[tuple[EmulatorState, str]]:
    state = EmulatorState(models=["gpt-alpha", "gpt-beta"], echo_key_in_errors=True)
    async with running_emulator(state) as base_url:
        yield state, base_url


@pytest.fixture(scope="module")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with infra.stack(
        log_dir=Path(tmp_path_factory.mktemp("leak-hunt-logs")),
        extra_env={"proxy": {"BYOM_UPSTREAM_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT_SECONDS)}},
    ) as running:
        yield running


@pytest.fixture(scope="module")
def figure(request: pytest.FixtureRequest) -> LeakFigure:
    return figure_for(request.config)


@pytest.fixture(scope="module")
async def hunt(
    stack: Stack,
    infra: Infra,
    emulator: tuple[EmulatorState, str],
    figure: LeakFigure,
) -> Hunt:
    """Plant the canaries and drive every path that touches them, once for the module."""
    driver = Driver(stack, infra, emulator, figure)
    await driver.drive()
    figure.secrets = [c.name for c in driver.hunt.canaries]
    return driver.hunt


# Searching every place


def hunter(hunt: Hunt, figure: LeakFigure) -> Hunter:
    return Hunter(hunt.canaries, figure)


def report(leaks: list[Leak]) -> str:
    return "\n".join(str(leak) for leak in leaks)


async def test_the_hunt_finds_a_canary_where_it_belongs(hunt: Hunt) -> None:
    """The search does find the canary where it is meant to be: in what the provider received and echoed."""
    control = Hunter(hunt.canaries, LeakFigure())
    received = "\n".join(orjson.dumps(r.as_json()).decode() for r in hunt.emulator.requests)

    found = {leak.secret for leak in control.search("control", "the provider", received)}

    assert {"canary provider key", "refused provider key", "ordinary provider key"} <= found


async def test_no_service_log_holds_a_secret(hunt: Hunt, figure: LeakFigure) -> None:
    """No line any service logged, at any level down to DEBUG, holds a secret or 8 characters of one."""
    search = hunter(hunt, figure)
    leaks = [
        leak
        for path in sorted(hunt.stack.log_dir.glob("*.log"))
        for leak in search.search("service logs", path.name, path.read_text(errors="replace"))
    ]

    assert '"level": "debug"' in hunt.stack.logs()
    assert not leaks, report(leaks)


async def test_no_event_in_any_events_table_holds_a_secret(hunt: Hunt, figure: LeakFigure) -> None:
    """No event any service appended to its events table holds a secret."""
    search = hunter(hunt, figure)
    async with await psycopg.AsyncConnection.connect(hunt.infra.database_url) as conn:
        schemas = await (
            await conn.execute(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = 'events'"
            )
        ).fetchall()
        leaks: list[Leak] = []
        for (schema,) in schemas:
            rows = await (
                await conn.execute(f'SELECT envelope::text FROM "{schema}".events')  # noqa: S608
            ).fetchall()
            assert rows, schema
            leaks += search.search(
                "events tables", f"{schema}.events", "\n".join(r[0] for r in rows)
            )

    assert {s for (s,) in schemas} >= {"access", "keyvault", "catalog"}
    assert not leaks, report(leaks)


async def test_no_message_on_the_stream_holds_a_secret(hunt: Hunt, figure: LeakFigure) -> None:
    """No message on the NATS stream, headers or data, from any service, holds a secret."""
    nc = await nats.connect(hunt.stack.env["BYOM_NATS_URL"])
    messages: list[str] = []
    try:
        sub = await nc.jetstream().subscribe(
            f"{hunt.stack.env['BYOM_SUBJECT_PREFIX']}.>",
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )
        try:
            while True:
                msg = await sub.next_msg(timeout=1.0)
                messages.append(f"{msg.subject}\n{msg.headers}\n{msg.data.decode()}")
        except nats.errors.TimeoutError:
            pass
    finally:
        await nc.close()

    leaks = hunter(hunt, figure).search("NATS stream", hunt.infra.stream, "\n".join(messages))

    assert {m.split(".")[1] for m in messages} >= {"access", "keyvault", "catalog", "proxy"}
    assert not leaks, report(leaks)


async def test_no_answer_any_caller_got_holds_a_secret(hunt: Hunt, figure: LeakFigure) -> None:
    """No response the callers got, success or error, headers or body, holds a secret."""
    search = hunter(hunt, figure)
    leaks = [
        leak
        for index, (label, text) in enumerate(hunt.answers)
        for leak in search.search("API answers", f"answer {index}: {label}", text)
    ]

    assert len(hunt.answers) > 40
    assert not leaks, report(leaks)


async def test_no_trace_span_holds_a_secret(hunt: Hunt, figure: LeakFigure) -> None:
    """No span any service finished, names, attributes and events, holds a secret."""
    search = hunter(hunt, figure)
    leaks = [
        leak
        for path in sorted(hunt.stack.log_dir.glob("*.spans.jsonl"))
        for leak in search.search("trace span files", path.name, path.read_text(errors="replace"))
    ]

    assert len(hunt.stack.spans()) > 50
    assert not leaks, report(leaks)


async def test_no_metric_holds_a_secret(hunt: Hunt, figure: LeakFigure) -> None:
    """No metric name, label or value any service exposes holds a secret."""
    search = hunter(hunt, figure)
    leaks: list[Leak] = []
    async with httpx.AsyncClient(timeout=10) as http:
        for name in hunt.stack.services:
            page = await http.get(f"{hunt.stack.url(name)}/{name}/metrics")
            assert page.status_code == 200, name
            leaks += search.search("metrics pages", f"/{name}/metrics", page.text)

    assert not leaks, report(leaks)


async def test_no_row_of_any_table_holds_a_secret(hunt: Hunt, figure: LeakFigure) -> None:
    """A plain dump of every table of every schema in the database holds no secret, as text, hex or base64."""
    search = hunter(hunt, figure)
    leaks: list[Leak] = []
    async with await psycopg.AsyncConnection.connect(hunt.infra.database_url) as conn:
        tables = await (
            await conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables"
                " WHERE table_type = 'BASE TABLE'"
                " AND table_schema NOT IN ('pg_catalog', 'information_schema')"
            )
        ).fetchall()
        for schema, table in tables:
            rows = await (
                await conn.execute(f'SELECT t::text FROM "{schema}"."{table}" t')  # noqa: S608
            ).fetchall()
            leaks += search.search(
                "database tables", f"{schema}.{table}", "\n".join(r[0] for r in rows)
            )

    assert {f"{s}.{t}" for s, t in tables} >= {
        "keyvault.connection_secrets",
        "keyvault.key_reads",
        "catalog.connections",
        "access.tokens",
        "access.events",
    }
    assert not leaks, report(leaks)


async def test_the_rewrap_command_prints_no_secret(hunt: Hunt, figure: LeakFigure) -> None:
    """What the rewrap command wrote while moving the canary's data key holds no secret."""
    search = hunter(hunt, figure)
    leaks = [
        leak
        for index, output in enumerate(hunt.command_output)
        for leak in search.search("command output", f"rewrap run {index}", output)
    ]

    assert hunt.command_output and all('"secrets_rewrapped"' in o for o in hunt.command_output)
    assert not leaks, report(leaks)


async def test_every_path_was_driven(hunt: Hunt, figure: LeakFigure) -> None:
    """The drive took every path it names, each checked to have happened, with debug logging on."""
    assert len(figure.paths) >= 30
    assert len(set(figure.paths)) == len(figure.paths)
    assert hunt.stack.env["BYOM_LOG_LEVEL"] == "DEBUG"


async def test_a_gateway_token_sent_as_a_model_name_is_not_echoed(hunt: Hunt) -> None:
    """A member who puts a gateway token where the model name goes does not get it back in the error."""
    assert hunt.workspace is not None
    async with gateway_client({n: hunt.stack.url(n) for n in hunt.stack.services}) as admin:
        issued = await admin.post(
            f"/access/v1/members/{hunt.member_id}/tokens",
            json={"name": "misplaced"},
            headers={"Authorization": f"Bearer {hunt.workspace.admin_token}"},
        )
    token = str(issued.json()["token"])
    search = Hunter([Canary("misplaced gateway token", token, TOKEN_DISPLAY_PREFIX)], LeakFigure())
    async with httpx.AsyncClient(base_url=hunt.stack.openai_base_url, timeout=10) as http:
        await eventually(lambda: _known(http, token), within=10)
        answers = [
            await http.get(f"/models/{token}", headers={"Authorization": f"Bearer {token}"}),
            await http.post(
                "/chat/completions",
                json={"model": token, "messages": MESSAGES},
                headers={"Authorization": f"Bearer {token}"},
            ),
        ]

    assert [a.status_code for a in answers] == [404, 404]
    assert not [leak for a in answers for leak in search.search("answers", "answer", a.text)]


async def _known(http: httpx.AsyncClient, token: str) -> bool:
    return (
        await http.get("/models", headers={"Authorization": f"Bearer {token}"})
    ).status_code == 200
