"""make run and make demo, as a newcomer runs them: nothing but Python, SQLite, Ctrl-C."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.stack import ROOT

pytestmark = pytest.mark.e2e


def test_demo_walks_the_whole_path_and_stops_the_gateway_cleanly() -> None:
    """The demo starts the local gateway on SQLite, calls a model through it, prints the events, and Ctrl-C stops it with status 0."""
    result = subprocess.run(
        [sys.executable, "scripts/demo.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "answer: Hello from gpt-" in output
    for event_type in (
        "byom.workspace.created.v1",
        "byom.provider.connected.v1",
        "byom.model.discovered.v1",
        "byom.model.enabled.v1",
        "byom.access.granted.v1",
        "byom.token.issued.v1",
        "byom.usage.recorded.v1",
    ):
        assert event_type in output
    assert "gateway stopped (exit status 0)" in output
    assert "sk-demo-" not in output
