"""Run the provider emulator on its own: ``python -m tests.emulator --key sk-test-1``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import structlog
import uvicorn

from tests.emulator.app import create_app
from tests.emulator.scenarios import SCENARIOS
from tests.emulator.state import EmulatorState

_log = structlog.get_logger("tests.emulator")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.emulator",
        description="A local stand-in for every model provider, for tests and benchmarks.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument(
        "--key", action="append", default=[], help="an accepted API key; repeat for more"
    )
    parser.add_argument(
        "--no-auth", action="store_true", help="check no key, as a local vLLM or Ollama does"
    )
    parser.add_argument("--models", default="gpt-emulated", help="comma-separated model ids")
    parser.add_argument("--page-size", type=int, default=2, help="models per /v1/models page")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--stream-chunks", type=int, default=4, help="content chunks per stream")
    parser.add_argument(
        "--scenario", default="text", choices=SCENARIOS, help="how the model answers"
    )
    parser.add_argument(
        "--no-echo-key",
        action="store_true",
        help="leave the rejected key out of 401 messages",
    )
    return parser


def state_from(args: argparse.Namespace) -> EmulatorState:
    return EmulatorState(
        keys=set(args.key),
        keyless=args.no_auth,
        models=[m.strip() for m in args.models.split(",") if m.strip()],
        page_size=args.page_size,
        delay=args.delay,
        stream_chunks=args.stream_chunks,
        echo_key_in_errors=not args.no_echo_key,
        scenario=args.scenario,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.key and not args.no_auth:
        parser.error("give at least one --key, or --no-auth for a server that checks none")
    state = state_from(args)
    host = f"[{args.host}]" if ":" in args.host else args.host
    _log.info(
        "emulator_listening",
        base_url=f"http://{host}:{args.port}/v1",
        models=state.models,
        accepted_keys=len(state.keys),
        checks_keys=not state.keyless,
    )
    uvicorn.run(create_app(state), host=args.host, port=args.port, ws="none", lifespan="off")


if __name__ == "__main__":
    main()
