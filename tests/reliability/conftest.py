"""The reliability suite records one row per injected fault and prints the table at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import ROWS, FaultRow


@pytest.fixture
def report() -> Iterator[list[FaultRow]]:
    rows: list[FaultRow] = []
    yield rows
    ROWS.extend(rows)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    tr = terminalreporter
    tr.section("pipetrace reliability: faults injected")
    header = (f"{'fault':<44} {'runs':>6} {'spans expected':>15} {'spans stored':>13} "
              f"{'added task latency p95 / max':>30}")
    tr.write_line(header)
    tr.write_line("-" * len(header))
    for row in ROWS:
        tr.write_line(f"{row.fault:<44} {row.runs:>6} {row.expected:>15} {row.stored:>13} "
                      f"{row.p95_added_ms:>13.3f} / {row.max_added_ms:>8.2f} ms")
    tr.write_line("(max is dominated by OS scheduling on a loaded 2-core machine; the p95 is what the suite asserts)")
