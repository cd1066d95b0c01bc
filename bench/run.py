"""The proxy's cost, measured side by side with the upstream it fronts: ``make bench``.

Starts the four services (their own database and stream on the local PostgreSQL and
NATS), fast stand-in providers (``bench/upstream.py``) with fixed delays, and wrk as the
load generator, all on 127.0.0.1. Each scenario sends the same requests straight to a
provider and through the proxy, bounded in time, and prints requests per second,
latency p50/p90/p99, the latency the proxy adds, errors, and the proxy's memory after
each part. Streams are timed by a small async client (time to first token, total),
since wrk cannot see inside a response; the same client times both paths. The
translation scenario sends an Anthropic request straight to the Anthropic-format
upstream and an OpenAI request for the same model through the proxy, which translates
both ways. At the end: how many usage events reached a consumer on the stream, at what
rate, against the calls the proxy answered; and how long an access change takes to
reach the proxy (the cases of ``bench/propagation.py``, fewer runs).

The proxy runs as in production: one process, JSON logs at INFO (``BENCH_LOG_LEVEL``),
one line per call, to a file the bench removes afterwards; no trace exporter, so no spans
(the tests' span file would cost a synchronous write per call).

Run by hand; nothing here asserts a figure. ``BENCH_SECONDS`` sets each wrk run's length.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import orjson
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.population import populate  # noqa: E402
from bench.propagation import measure  # noqa: E402
from tests.infra import NATS_URL, create_database, drop_database, random_suffix  # noqa: E402
from tests.stack import Stack, free_port, running_stack  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
# How long the last run lasts while the proxy's memory is sampled.
LONG_SECONDS = int(os.environ.get("BENCH_LONG_SECONDS", "40"))
PROPAGATION_RUNS = int(os.environ.get("BENCH_PROPAGATION_RUNS", "20"))
LOG_LEVEL = os.environ.get("BENCH_LOG_LEVEL", "INFO")
MESSAGES = [{"role": "user", "content": "Say something short."}]
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}


@dataclass
class Result:
    scenario: str
    path: str
    rps: float
    p50: float
    p90: float
    p99: float
    errors: int
    requests: int = 0


def say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    say("wrk is missing: installing Debian's package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
    return shutil.which("wrk") or "wrk"


def start_upstream(delay_ms: float, chunks: int = 20) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "upstream.py"),
            "--port",
            str(port),
            "--delay-ms",
            str(delay_ms),
            "--chunks",
            str(chunks),
        ],
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/models", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the bench upstream did not start")


def wrk(
    binary: str,
    url: str,
    token: str,
    body: bytes,
    connections: int,
    seconds: int,
    path: str = "/chat/completions",
    headers: dict[str, str] | None = None,
) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {token}"\n'
            + "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in (headers or {}).items())
            + f"wrk.body = [==[{body.decode()}]==]\n"
        )
    threads = 1 if connections == 1 else 2
    out = subprocess.run(
        [
            binary,
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "-s",
            script.name,
            url + path,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    os.unlink(script.name)
    return parse_wrk(out)


def parse_wrk(out: str) -> Result:
    def latency(percent: str) -> float:
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket:
        errors += sum(int(g) for g in socket.groups())
    sent = re.search(r"(\d+) requests in", out)
    return Result(
        "",
        "",
        rps,
        latency("50"),
        latency("90"),
        latency("99"),
        errors,
        int(sent.group(1)) if sent else 0,
    )


async def stream_timings(
    url: str,
    token: str,
    model: str,
    concurrency: int,
    total: int,
    *,
    anthropic: bool = False,
    cpus: set[int] | None = None,
) -> tuple[list[float], list[float], int]:
    """Time to first content chunk and to the end, per streamed request (bench/streamclient.py).

    ``anthropic`` sends Anthropic's Messages request instead of OpenAI's chat request;
    ``cpus`` keeps the client on those cores.
    """
    path, marker = (
        ("/messages", '"text_delta"') if anthropic else ("/chat/completions", '"content"')
    )
    request: dict[str, object] = {"model": model, "messages": MESSAGES, "stream": True}
    if anthropic:
        request["max_tokens"] = 256
    headers = [f"Authorization: Bearer {token}"]
    if anthropic:
        headers += [f"{k}: {v}" for k, v in ANTHROPIC_HEADERS.items()]
    command = [
        sys.executable,
        str(ROOT / "bench" / "streamclient.py"),
        "--url",
        url + path,
        "--body",
        orjson.dumps(request).decode(),
        "--marker",
        marker,
        "--concurrency",
        str(concurrency),
        "--total",
        str(total),
        *(part for header in headers for part in ("--header", header)),
        *(("--cpus", ",".join(map(str, sorted(cpus)))) if cpus else ()),
    ]
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, check=True, timeout=300
    )
    timings = orjson.loads(done.stdout)
    return timings["first"], timings["whole"], timings["errors"]


@contextlib.contextmanager
def own_core(pid: int, *, others: tuple[int, ...]) -> Iterator[set[int]]:
    """The process alone on the first core it may use, the others on the rest, then back.

    Yields the rest, for a process started meanwhile (the stream client) to keep to.

    The 1,000-chunk stand-in writes its events as fast as Python can, which keeps a core
    busy for several milliseconds per stream. On two cores it competes with the proxy
    and the client for the other, and the first token through the proxy waits for the
    scheduler rather than for the proxy's work; on a core of its own it does not.
    """
    cores = sorted(os.sched_getaffinity(0))
    before = {p: os.sched_getaffinity(p) for p in (pid, *others)}
    rest = set(cores[1:])
    os.sched_setaffinity(pid, {cores[0]})
    for other in others:
        os.sched_setaffinity(other, rest)
    try:
        yield rest
    finally:
        for p, affinity in before.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(p, affinity)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def memory_mb(pid: int) -> tuple[float, float]:
    """Current and peak resident memory of a process, in MB."""
    fields = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def setup(
    stack: Stack, upstreams: dict[str, str], kinds: dict[str, str]
) -> tuple[str, dict[str, str], dict[str, str], str]:
    """A workspace with one connection per upstream, each model enabled for everyone.

    ``kinds`` names the provider kind of a label that is not openai-compatible.
    """
    admin_headers = {"Authorization": f"Bearer {stack.operator_token}"}
    async with httpx.AsyncClient(timeout=30) as client:
        created = (
            await client.post(
                stack.url("access") + "/access/v1/workspaces",
                json={"name": "bench", "owner_email": "bench@example.test", "owner_name": "Bench"},
                headers=admin_headers,
            )
        ).json()
        token = created["token"]["token"]
        headers = {"Authorization": f"Bearer {token}"}
        names: dict[str, str] = {}
        connections: dict[str, str] = {}
        for label, url in upstreams.items():
            connection = (
                await client.post(
                    stack.url("keyvault") + "/keyvault/v1/connections",
                    json={
                        "provider": kinds.get(label, "openai-compatible"),
                        "name": label,
                        "base_url": url,
                        "api_key": "sk-bench-" + uuid.uuid4().hex,
                    },
                    headers=headers,
                )
            ).json()
            connections[label] = connection["id"]
            model = None
            while model is None:
                listed = (
                    await client.get(
                        stack.url("catalog") + "/catalog/v1/models",
                        params={"connection_id": connection["id"]},
                        headers=headers,
                    )
                ).json()["data"]
                model = listed[0] if listed else None
                await asyncio.sleep(0.05)
            await client.post(
                stack.url("catalog") + f"/catalog/v1/models/{model['id']}/enable", headers=headers
            )
            while (
                await client.post(
                    stack.url("access") + f"/access/v1/models/{model['id']}/rules",
                    json={"principal_kind": "workspace"},
                    headers=headers,
                )
            ).status_code == 404:
                await asyncio.sleep(0.05)
            names[label] = model["name"]
        for name in names.values():
            while True:
                listed = (
                    await client.get(stack.openai_base_url + "/models", headers=headers)
                ).json()
                if any(m["id"] == name for m in listed.get("data", [])):
                    break
                await asyncio.sleep(0.05)
    return token, names, connections, created["workspace"]["id"]


def report(results: list[Result]) -> None:
    say(
        f"{'scenario':<34}{'path':<8}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'errors':>8}"
    )
    for r in results:
        say(
            f"{r.scenario:<34}{r.path:<8}{r.rps:>9.0f}{r.p50:>9.2f}{r.p90:>9.2f}{r.p99:>9.2f}{r.errors:>8}"
        )


def added(results: list[Result]) -> None:
    say()
    say(f"{'latency the proxy adds':<34}{'p50 ms':>9}{'p99 ms':>9}")
    by_key = {(r.scenario, r.path): r for r in results}
    for scenario in dict.fromkeys(r.scenario for r in results):
        direct, proxied = by_key.get((scenario, "direct")), by_key.get((scenario, "proxy"))
        if direct and proxied:
            say(f"{scenario:<34}{proxied.p50 - direct.p50:>9.2f}{proxied.p99 - direct.p99:>9.2f}")


async def main() -> int:
    binary = ensure_wrk()
    suffix = random_suffix()
    database = f"byom_bench_{suffix}"
    database_url = create_database(database)
    upstream_processes = []
    log_dir = Path(tempfile.mkdtemp(prefix="byom-bench-"))
    try:
        fast, fast_url = start_upstream(0)
        slow, slow_url = start_upstream(20)
        long, long_url = start_upstream(0, chunks=1000)
        upstream_processes = [fast, slow, long]
        # "claude" is the fast upstream again, connected as Anthropic: it answers /messages.
        upstreams = {"fast": fast_url, "slow": slow_url, "long": long_url, "claude": fast_url}
        with running_stack(
            database_url=database_url,
            nats_url=NATS_URL,
            stream=f"BENCH_{suffix.upper()}",
            subject_prefix=f"bench{suffix}",
            log_dir=log_dir,
            extra_env={"proxy": {"BYOM_LOG_LEVEL": LOG_LEVEL, "BYOM_TRACE_FILE": ""}},
        ) as stack:
            token, names, connections, workspace_id = await setup(
                stack, upstreams, {"claude": "anthropic"}
            )
            proxy_pid = stack.services["proxy"].process.pid  # type: ignore[union-attr]
            counter = UsageCounter(f"bench{suffix}", workspace_id)
            await counter.start()
            results, calls = await run_scenarios(
                binary, stack, token, names, upstreams, connections, proxy_pid, long.pid
            )
            report(results)
            added(results)
            say()
            await counter.report(stack, calls)
            rss, peak = memory_mb(proxy_pid)
            say(f"proxy memory: {rss:.0f} MB now, {peak:.0f} MB peak")
            say()
            say("an access change reaching the proxy")
            await measure(stack, PROPAGATION_RUNS, "model")
    finally:
        for process in upstream_processes:
            process.terminate()
        # Hundreds of thousands of log lines: kept only when asked for.
        if not os.environ.get("BENCH_KEEP_LOGS"):
            shutil.rmtree(log_dir, ignore_errors=True)
        drop_database(database)
        nc = await nats.connect(NATS_URL)
        await nc.jetstream().delete_stream(f"BENCH_{suffix.upper()}")
        await nc.close()
    return 0


class UsageCounter:
    """Counts the bench workspace's usage events as a consumer of the stream receives them."""

    def __init__(self, prefix: str, workspace_id: str) -> None:
        self._subject = f"{prefix}.proxy.usage.recorded"
        self._workspace_id = workspace_id
        self._arrivals: list[float] = []
        self._nc: nats.NATS | None = None

    async def start(self) -> None:
        self._nc = await nats.connect(NATS_URL)
        marker = f'"workspaceid":"{self._workspace_id}"'.encode()

        async def received(msg: Msg) -> None:
            if marker in msg.data:
                self._arrivals.append(time.monotonic())

        await self._nc.jetstream().subscribe(
            self._subject, cb=received, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
        )

    async def report(self, stack: Stack, calls: int) -> None:
        """Waits for the queue to drain, then compares events with the calls answered."""
        published = dropped = -1.0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            published, dropped, queued = await usage_metrics(stack)
            if queued == 0 and len(self._arrivals) >= published:
                break
            await asyncio.sleep(0.5)
        if self._nc is not None:
            await self._nc.close()
        say(
            f"usage events: {len(self._arrivals)} received by a consumer, {published:.0f} "
            f"published by the proxy, {dropped:.0f} dropped; {calls} calls answered to the "
            f"clients (calls cut off when a run ended are recorded too, as 499)"
        )
        if self._arrivals:
            say(
                "usage events per second at the consumer: busiest second "
                f"{busiest(self._arrivals, 1.0):.0f}, busiest 5 s {busiest(self._arrivals, 5.0):.0f}"
            )


def busiest(arrivals: list[float], window: float) -> float:
    """The highest rate of arrivals over any ``window`` seconds, per second."""
    most, start = 0, 0
    for end, at in enumerate(arrivals):
        while at - arrivals[start] > window:
            start += 1
        most = max(most, end - start + 1)
    return most / window


async def usage_metrics(stack: Stack) -> tuple[float, float, float]:
    """The proxy's own counts of usage events: published, dropped, queued."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(stack.url("proxy") + "/proxy/metrics")).text

    def value(name: str) -> float:
        found = re.search(rf"^byom_proxy_usage_{name}\S*\s+([\d.e+]+)$", text, re.M)
        return float(found.group(1)) if found else float("nan")

    return value("published"), value("dropped"), value("queued")


async def run_scenarios(
    binary: str,
    stack: Stack,
    token: str,
    names: dict[str, str],
    upstreams: dict[str, str],
    connections: dict[str, str],
    proxy_pid: int,
    long_upstream_pid: int,
) -> tuple[list[Result], int]:
    """Every scenario's results, and how many calls the proxy answered in all."""
    results: list[Result] = []
    proxy = stack.openai_base_url
    answered = 0

    async def pair(
        scenario: str,
        label: str,
        connections_count: int,
        body: dict[str, object],
        direct: tuple[str, dict[str, object], dict[str, str]] | None = None,
    ) -> None:
        """The same requests straight to the upstream, then through the proxy.

        ``direct`` replaces the straight request (path, body, headers) where the upstream
        speaks another format than the client of the proxy.
        """
        nonlocal answered
        direct_path, direct_request, direct_headers = direct or (
            "/chat/completions",
            {**body, "model": "bench-model"},
            {},
        )
        runs = (
            ("direct", upstreams[label], direct_path, orjson.dumps(direct_request), direct_headers),
            (
                "proxy",
                proxy,
                "/chat/completions",
                orjson.dumps({**body, "model": names[label]}),
                {},
            ),
        )
        for path, url, route, payload, headers in runs:
            # In a thread, so the usage counter on this loop keeps reading while wrk runs.
            result = await asyncio.to_thread(
                wrk, binary, url, token, payload, connections_count, SECONDS, route, headers
            )
            result.scenario, result.path = scenario, path
            results.append(result)
            if path == "proxy":
                answered += result.requests
            say(f"  {scenario:<32} {path:<7} {result.rps:>8.0f} req/s  p50 {result.p50:.2f} ms")

    def memory() -> None:
        rss, peak = memory_mb(proxy_pid)
        say(f"  proxy memory: {rss:.0f} MB, peak so far {peak:.0f} MB")

    say(f"the proxy: one uvicorn process, logs at {LOG_LEVEL}, no trace exporter")
    say("plain chat")
    for label, delay in (("fast", 0), ("slow", 20)):
        for c in (1, 10, 100):
            await pair(f"plain c={c} upstream {delay}ms", label, c, {"messages": MESSAGES})
    memory()

    say("translation: OpenAI requests to an Anthropic-format upstream")
    anthropic_body = {"model": "bench-model", "max_tokens": 256, "messages": MESSAGES}
    for c in (1, 10):
        await pair(
            f"translated c={c} upstream 0ms",
            "claude",
            c,
            {"messages": MESSAGES},
            direct=("/messages", anthropic_body, ANTHROPIC_HEADERS),
        )
    memory()

    say("a 200 KB prompt")
    big = [{"role": "user", "content": "x" * 200_000}]
    await pair("200KB prompt c=10 upstream 0ms", "fast", 10, {"messages": big})
    memory()

    say("a catalog of 2,000 models, 5,000 members, 500 groups")
    published = await populate(
        stack, token, connections["fast"], models=2000, members=5000, groups=500
    )
    say(f"  ({published} events applied by the proxy)")
    await pair("plain c=10 after scale-up", "fast", 10, {"messages": MESSAGES})
    memory()

    async def streams(
        label: str, chunks: int, c: int, translated: bool = False, cpus: set[int] | None = None
    ) -> None:
        """Time to first token and to the end, straight to the upstream and through the proxy."""
        nonlocal answered
        total = {20: 200, 1000: 40}[chunks] * (5 if c == 100 else 1)
        first_token: dict[str, float] = {}
        for path, url, model in (
            ("direct", upstreams[label], "bench-model"),
            ("proxy", proxy, names[label]),
        ):
            first, whole, errors = await stream_timings(
                url, token, model, c, total, anthropic=translated and path == "direct", cpus=cpus
            )
            if path == "proxy":
                answered += total - errors
            first_token[path] = percentile(first, 0.5)
            kind = "translated " if translated else ""
            extra = (
                f"  ({first_token['proxy'] - first_token['direct']:+.2f} ms to the first token)"
                if path == "proxy"
                else ""
            )
            say(
                f"  {kind}stream {chunks} chunks c={c:<3} {path:<7} ttft p50 "
                f"{first_token[path]:.2f} ms  p99 {percentile(first, 0.99):.2f} ms"
                f"  total p50 {percentile(whole, 0.5):.2f} ms  errors {errors}{extra}"
            )

    say("streams")
    for c in (1, 10, 100):
        await streams("fast", 20, c)
    for c in (1, 10):
        await streams("claude", 20, c, translated=True)
    for c in (1, 10):
        await streams("long", 1000, c)
    if len(os.sched_getaffinity(0)) >= 2:
        say("  again, the 1,000-chunk stand-in on one core, the proxy and the client on another")
        with own_core(long_upstream_pid, others=(proxy_pid,)) as rest:
            for c in (1, 10):
                await streams("long", 1000, c, cpus=rest)
    memory()

    say(f"a long run: plain c=10 for {LONG_SECONDS} s, memory sampled every 5 s")
    body = orjson.dumps({"messages": MESSAGES, "model": names["fast"]})
    running = asyncio.create_task(
        asyncio.to_thread(wrk, binary, proxy, token, body, 10, LONG_SECONDS)
    )
    samples: list[float] = []
    while not running.done():
        samples.append(memory_mb(proxy_pid)[0])
        await asyncio.sleep(5)
    long_run = await running
    answered += long_run.requests
    say(
        f"  {long_run.rps:.0f} req/s, p50 {long_run.p50:.2f} ms, p99 {long_run.p99:.2f} ms, "
        f"errors {long_run.errors}; RSS MB: {' '.join(f'{m:.0f}' for m in samples)}"
    )
    return results, answered


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
