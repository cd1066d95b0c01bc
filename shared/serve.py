"""Running one service process: ``python -m services.<name> [--host H] [--port P]``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import uvicorn
from starlette.types import ASGIApp


def serve(service: str, create_app: Callable[[], ASGIApp], default_port: int) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m services.{service}")
    parser.add_argument("--host", default=os.environ.get("BYOM_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("BYOM_PORT", default_port)))
    args = parser.parse_args()

    app = create_app()
    # How long a stopping process lets requests in flight, streams included, finish.
    grace = int(os.environ.get("BYOM_SHUTDOWN_GRACE_SECONDS", "20"))
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        # Logging is configured by the app itself, JSON and redacted; uvicorn must not override it.
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=grace,
        lifespan="on",
    )
