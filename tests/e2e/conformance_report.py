"""The conformance matrix's figure, printed in the test run's summary.

A test module lists this module in ``pytest_plugins`` and names each of its tests' cell
with the :func:`conformance_cell` fixture; every cell's outcome is collected as the run reports it, and at the end
the matrix is written under its own heading: one row per provider, one column group per
front door, one column per case, so a run shows at a glance which cells pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

import pytest

_PROPERTY: Final = "conformance_cell"
_PLUGIN_NAME: Final = "byom-conformance-matrix"
_MARKS: Final = {"passed": "ok", "failed": "FAIL", "skipped": "skip"}
_WIDTH: Final = 7

Cell = tuple[str, str, str]  # (front door, provider, case)


@pytest.fixture
def conformance_cell(request: pytest.FixtureRequest) -> Callable[[str, str, str], None]:
    """Call it with (front door, provider, case) to count the running test as that cell."""

    def name(door: str, provider: str, case: str) -> None:
        request.node.user_properties.append((_PROPERTY, (door, provider, case)))

    return name


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(_PLUGIN_NAME):
        config.pluginmanager.register(MatrixReport(), _PLUGIN_NAME)


class MatrixReport:
    """Collects each cell's outcome and draws the matrix when the run ends."""

    def __init__(self) -> None:
        self.outcomes: dict[Cell, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        found = [value for name, value in report.user_properties if name == _PROPERTY]
        if not found:
            return

        key: Cell = tuple(found[0])  # type: ignore[assignment]
        # A cell fails if any phase fails; it passes when its call passed.
        if report.failed:
            self.outcomes[key] = "failed"
        elif report.when == "call" or report.skipped:
            self.outcomes.setdefault(key, report.outcome)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.outcomes:
            return

        for line in self.figure():
            terminalreporter.write_line(line)

    def figure(self) -> list[str]:
        doors = _in_order(key[0] for key in self.outcomes)
        providers = _in_order(key[1] for key in self.outcomes)
        cases = _in_order(key[2] for key in self.outcomes)
        label = max(len("provider"), *(len(p) for p in providers)) + 1
        group = _WIDTH * len(cases)
        passed = sum(1 for outcome in self.outcomes.values() if outcome == "passed")

        lines = [
            "",
            "=" * 20 + " conformance matrix: front door x provider x case " + "=" * 20,
            " " * label + "".join(f"| {door:<{group}}" for door in doors),
            f"{'provider':<{label}}"
            + "".join("| " + "".join(f"{case:<{_WIDTH}}" for case in cases) for _ in doors),
            "-" * label + ("+" + "-" * (group + 1)) * len(doors),
        ]
        for provider in providers:
            row = f"{provider:<{label}}"
            for door in doors:
                marks = (
                    _MARKS.get(self.outcomes.get((door, provider, case), ""), "-") for case in cases
                )
                row += "| " + "".join(f"{mark:<{_WIDTH}}" for mark in marks)
            lines.append(row)
        lines.append(f"{passed} of {len(self.outcomes)} cells passed (ok passed, FAIL failed)")
        return lines


def _in_order(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))
