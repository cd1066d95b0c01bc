"""The proxy's cost, measured side by side with the upstream it fronts: ``make bench``.

Starts the four services (their own database and stream on the local PostgreSQL and
NATS), fast stand-in providers (``bench/upstream.py``) with fixed delays, and wrk as the
load generator, all on 127.0.0.1. Each scenario sends the same requests straight to a
provider and through the proxy, bounded in time, and prints requests per second,
latency p50/p90/p99, the latency the proxy adds, errors, and the proxy's memory.
Streams are timed by a small async client (time to first token, total), since wrk
cannot see inside a response; the same client times both paths.

Run by hand; nothing here asserts a figure. ``BENCH_SECONDS`` sets each wrk run's length.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.population import populate  # noqa: E402
from tests.infra import NATS_URL, create_database, drop_database, random_suffix  # noqa: E402
from tests.stack import Stack, free_port, running_stack  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
MESSAGES = [{"role": "user", "content": "Say something short."}]


@dataclass
class Result:
    scenario: str
    path: str
    rps: float
    p50: float
    p90: float
    p99: float
    errors: int


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


def wrk(binary: str, url: str, token: str, body: bytes, connections: int, seconds: int) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {token}"\n'
            f"wrk.body = [==[{body.decode()}]==]\n"
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
            url + "/chat/completions",
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
    return Result("", "", rps, latency("50"), latency("90"), latency("99"), errors)


async def stream_timings(
    url: str, token: str, model: str, concurrency: int, total: int
) -> tuple[list[float], list[float], int]:
    """Time to first content chunk and to the end, per streamed request."""
    body = orjson.dumps({"model": model, "messages": MESSAGES, "stream": True})
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    first: list[float] = []
    whole: list[float] = []
    errors = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty():
            queue.get_nowait()
            started = time.perf_counter()
            got_first = False
            async with client.stream(
                "POST", url + "/chat/completions", content=body, headers=headers
            ) as response:
                if response.status_code != 200:
                    errors += 1
                    await response.aread()
                    continue
                async for chunk in response.aiter_raw():
                    if not got_first and b'"content"' in chunk:
                        first.append((time.perf_counter() - started) * 1000)
                        got_first = True
            whole.append((time.perf_counter() - started) * 1000)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return first, whole, errors


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
    stack: Stack, upstreams: dict[str, str]
) -> tuple[str, dict[str, str], dict[str, str]]:
    """A workspace with one connection per upstream, each model enabled for everyone."""
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
                        "provider": "openai-compatible",
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
    return token, names, connections


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
    try:
        fast, fast_url = start_upstream(0)
        slow, slow_url = start_upstream(20)
        long, long_url = start_upstream(0, chunks=1000)
        upstream_processes = [fast, slow, long]
        upstreams = {"fast": fast_url, "slow": slow_url, "long": long_url}
        with running_stack(
            database_url=database_url,
            nats_url=NATS_URL,
            stream=f"BENCH_{suffix.upper()}",
            subject_prefix=f"bench{suffix}",
            log_dir=Path(tempfile.mkdtemp(prefix="byom-bench-")),
            extra_env={"proxy": {"BYOM_LOG_LEVEL": "WARNING"}},
        ) as stack:
            token, names, connections = await setup(stack, upstreams)
            proxy_pid = stack.services["proxy"].process.pid  # type: ignore[union-attr]
            results = await run_scenarios(
                binary, stack, token, names, upstreams, connections, proxy_pid
            )
            report(results)
            added(results)
            rss, peak = memory_mb(proxy_pid)
            say()
            say(f"proxy memory: {rss:.0f} MB now, {peak:.0f} MB peak")
    finally:
        for process in upstream_processes:
            process.terminate()
        drop_database(database)
        nc = await nats.connect(NATS_URL)
        await nc.jetstream().delete_stream(f"BENCH_{suffix.upper()}")
        await nc.close()
    return 0


async def run_scenarios(
    binary: str,
    stack: Stack,
    token: str,
    names: dict[str, str],
    upstreams: dict[str, str],
    connections: dict[str, str],
    proxy_pid: int,
) -> list[Result]:
    results: list[Result] = []
    proxy = stack.openai_base_url

    def pair(scenario: str, label: str, connections_count: int, body: dict[str, object]) -> None:
        direct_body = orjson.dumps({**body, "model": "bench-model"})
        proxy_body = orjson.dumps({**body, "model": names[label]})
        for path, url, payload in (
            ("direct", upstreams[label], direct_body),
            ("proxy", proxy, proxy_body),
        ):
            result = wrk(binary, url, token, payload, connections_count, SECONDS)
            result.scenario, result.path = scenario, path
            results.append(result)
            say(f"  {scenario:<32} {path:<7} {result.rps:>8.0f} req/s  p50 {result.p50:.2f} ms")

    say("plain chat")
    for label, delay in (("fast", 0), ("slow", 20)):
        for c in (1, 10, 100):
            pair(f"plain c={c} upstream {delay}ms", label, c, {"messages": MESSAGES})

    say("a 200 KB prompt")
    big = [{"role": "user", "content": "x" * 200_000}]
    pair("200KB prompt c=10 upstream 0ms", "fast", 10, {"messages": big})

    say("a catalog of 2,000 models, 5,000 members, 500 groups")
    published = await populate(
        stack, token, connections["fast"], models=2000, members=5000, groups=500
    )
    say(f"  ({published} events applied by the proxy)")
    pair("plain c=10 after scale-up", "fast", 10, {"messages": MESSAGES})

    say("streams")
    for label, chunks in (("fast", 20), ("long", 1000)):
        for c in (1, 10):
            for path, url, model in (
                ("direct", upstreams[label], "bench-model"),
                ("proxy", proxy, names[label]),
            ):
                first, whole, errors = await stream_timings(
                    url, token, model, c, total=200 if chunks == 20 else 40
                )
                say(
                    f"  stream {chunks} chunks c={c:<3} {path:<7} ttft p50 {percentile(first, 0.5):.2f} ms"
                    f"  p99 {percentile(first, 0.99):.2f} ms  total p50 {percentile(whole, 0.5):.2f} ms"
                    f"  errors {errors}"
                )
    return results


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
