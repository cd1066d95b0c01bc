"""Real PostgreSQL and NATS JetStream for the test suite.

The servers at the usual local ports are used when they answer. Otherwise
``scripts/test-infra`` (called by ``make test``) has started throwaway ones and exported
their addresses. Every test session works in a database and a stream of its own, with
random names, so sessions on one machine do not see each other.
"""

from __future__ import annotations

import os
import secrets

import psycopg

ADMIN_DSN = os.environ.get("BYOM_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
NATS_URL = os.environ.get("BYOM_TEST_NATS", "nats://127.0.0.1:4222")


def random_suffix() -> str:
    return secrets.token_hex(4)


def create_database(name: str) -> str:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
