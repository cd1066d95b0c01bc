"""The key-leak hunt's figure, printed in the test run's summary.

The hunt records what it did in a :class:`LeakFigure`, kept in the run's ``config.stash``
by :func:`figure_for`, which also registers a small plugin that writes the figure under
its own heading at the end of the run: every run that hunts shows how many paths were
driven, how many places were searched, and how many leaks were found.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest

LEAK_FIGURE = pytest.StashKey["LeakFigure"]()
_PLUGIN_NAME = "byom-leak-report"


@dataclass(frozen=True, slots=True)
class Leak:
    """One secret, or a run of 8+ of its characters, found where it must never be."""

    secret: str
    place: str
    form: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.secret} ({self.form}) in {self.place}: …{self.excerpt}…"


@dataclass
class LeakFigure:
    """What the hunt did and found: paths driven, places searched by kind, leaks."""

    paths: list[str] = field(default_factory=list)
    places: Counter[str] = field(default_factory=Counter)
    leaks: list[Leak] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)

    def path(self, name: str) -> None:
        self.paths.append(name)

    def searched(self, kind: str, found: list[Leak], count: int = 1) -> None:
        self.places[kind] += count
        self.leaks.extend(found)


def figure_for(config: pytest.Config) -> LeakFigure:
    """The run's figure, made (and its summary plugin registered) on first use."""
    figure = config.stash.get(LEAK_FIGURE, None)
    if figure is None:
        figure = config.stash[LEAK_FIGURE] = LeakFigure()
        config.pluginmanager.register(_Summary(figure), _PLUGIN_NAME)
    return figure


class _Summary:
    def __init__(self, figure: LeakFigure) -> None:
        self._figure = figure

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        _write(terminalreporter, self._figure)


def _write(terminalreporter: pytest.TerminalReporter, figure: LeakFigure) -> None:
    write = terminalreporter.write_line
    terminalreporter.write_sep("=", "key leak hunt")
    write(
        f"paths exercised: {len(figure.paths)}, places searched: {sum(figure.places.values())}, "
        f"leaks found: {len(figure.leaks)}"
    )
    write(f"secrets hunted: {', '.join(figure.secrets)}")
    write("places: " + ", ".join(f"{kind} {n}" for kind, n in sorted(figure.places.items())))
    for leak in figure.leaks[:20]:
        write(f"LEAK: {leak}", red=True)
