"""Running one service: ``python -m services.<name> [--host H] [--port P] [--workers N]``.

uvicorn serves it, on uvloop and httptools. ``BYOM_WORKERS`` (or ``--workers``) above 1
starts that many worker processes on one port, each building the app itself from
``services.<name>.app:create_app``; every worker of the proxy follows the event stream
into a view of its own, so they need nothing shared.
"""

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
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("BYOM_WORKERS", "1")),
        help="worker processes sharing the port (default 1, or BYOM_WORKERS)",
    )
    args = parser.parse_args()
    if args.workers < 1:
        parser.error("--workers must be at least 1")

    # One process builds its app here; several build their own from the import path.
    app: ASGIApp | str = (
        create_app() if args.workers == 1 else f"services.{service}.app:{create_app.__name__}"
    )
    # How long a stopping process lets requests in flight, streams included, finish.
    grace = int(os.environ.get("BYOM_SHUTDOWN_GRACE_SECONDS", "20"))
    uvicorn.run(
        app,
        factory=args.workers > 1,
        workers=args.workers,
        host=args.host,
        port=args.port,
        # Logging is configured by the app itself, JSON and redacted; uvicorn must not override it.
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=grace,
        lifespan="on",
    )
