"""Pytest plugin of this folder: each test module names it in ``pytest_plugins`` and imports nothing from
it (a ``conftest.py`` here would take the module name ``conftest`` that tests/celery imports from). Rows go
into the same fault table as ``tests/reliability`` and are printed by that suite's own printer."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CORE_SUITE = Path(__file__).resolve().parent.parent / "reliability"
sys.path.insert(0, str(CORE_SUITE))

from harness import ROWS, FaultRow  # noqa: E402

__all__ = ["Report", "report"]


class Report:
    """The rows one test adds to the fault table (``tests/reliability``'s ``FaultRow``)."""

    def __init__(self) -> None:
        self.rows: list[FaultRow] = []

    def row(self, fault: str, runs: int, expected: int, stored: int, p95_added_ms: float = 0.0,
            max_added_ms: float = 0.0) -> None:
        self.rows.append(FaultRow(fault, runs, expected, stored, p95_added_ms, max_added_ms))


@pytest.fixture
def report() -> Iterator[Report]:
    recorded = Report()
    yield recorded
    ROWS.extend(recorded.rows)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the table with ``tests/reliability``'s printer, unless that suite is loaded and prints it."""
    core_conftest = str(CORE_SUITE / "conftest.py")
    plugins = terminalreporter.config.pluginmanager.get_plugins()
    if any(getattr(p, "__file__", None) == core_conftest for p in plugins):
        return
    spec = importlib.util.spec_from_file_location("pipetrace_reliability_table", core_conftest)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.pytest_terminal_summary(terminalreporter)
