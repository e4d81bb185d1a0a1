"""Shared pieces of the reliability suite: timed task loops and the fault table."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import pipetrace


@dataclass
class FaultRow:
    fault: str
    runs: int
    expected: int
    stored: int
    p95_added_ms: float
    max_added_ms: float


ROWS: list[FaultRow] = []

ATTRS = {"rows": 1234, "table": "orders", "path": "/data/in/orders.parquet", "owner": "etl"}


def run_tasks(n: int, run_id: str, pipeline: str = "reliability") -> list[float]:
    """Run ``n`` traced no-op tasks; per-task wall time in seconds. Raises if anything leaks out."""
    times = []
    for i in range(n):
        start = time.perf_counter()
        with pipetrace.task_span("python", pipeline, run_id, f"task-{i}", attributes=ATTRS):
            pass
        times.append(time.perf_counter() - start)
    return times


@dataclass
class Added:
    median_ms: float
    p95_ms: float
    max_ms: float


def added_latency(baseline: list[float], faulted: list[float]) -> Added:
    base = statistics.median(baseline)
    ordered = sorted(faulted)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return Added((statistics.median(faulted) - base) * 1e3, (p95 - base) * 1e3, (ordered[-1] - base) * 1e3)
