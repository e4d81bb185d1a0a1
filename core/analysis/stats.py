"""Per-task duration percentiles over every stored attempt, from the covering duration index."""

from __future__ import annotations

from ..store import SpanStore, TaskPercentiles
from ..store import maintenance as M
from ..util.numbers import percentile

__all__ = ["TaskPercentiles", "task_percentiles"]


def task_percentiles(store: SpanStore, pipeline: str | None = None) -> list[TaskPercentiles]:
    """p50/p95 per (pipeline, task) over all attempts; reads only the index, never the wide rows."""
    M.ensure_schema(store)
    by_server = M.duration_percentiles(store, pipeline)  # PostgreSQL: computed where the rows are
    if by_server is not None:
        return [TaskPercentiles(p, t, int(n), int(f), float(p50), float(p95)) for p, t, n, f, p50, p95 in by_server]
    out: list[TaskPercentiles] = []
    current: tuple[str | None, str] | None = None
    durs: list[float] = []
    fails = 0

    def flush() -> None:
        if current is not None and durs:
            durs.sort()
            out.append(TaskPercentiles(current[0], current[1], len(durs), fails, percentile(durs, 0.5),
                                       percentile(durs, 0.95)))

    for pipe, task, _t, _s, start, end, status, _n in M.duration_rows(store, runs=False, pipeline=pipeline):
        if (pipe, task) != current:
            flush()
            current, durs, fails = (pipe, task), [], 0
        durs.append((end - start) / 1e6)
        fails += status == "ERROR"
    flush()
    return out
