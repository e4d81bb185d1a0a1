"""Reading the spans the workers stored: counts by name and the task spans of given task ids."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from pipetrace.store import SpanRecord, SpanStore


def open_store(home: Path) -> SpanStore:
    return SpanStore(home / "traces.db")


def count(home: Path, where: str = "1=1", params: tuple[Any, ...] = ()) -> int:
    store = open_store(home)
    try:
        return int(store._query(f"SELECT COUNT(*) FROM spans WHERE {where}", params)[0][0])  # noqa: SLF001
    finally:
        store.close()


def all_spans(home: Path) -> list[SpanRecord]:
    """Every message and task span stored (not the run spans the workers' run closer derives from them:
    these tests count what the workers recorded, see tests/celery/test_runs.py for the runs)."""
    store = open_store(home)
    try:
        out: list[SpanRecord] = []
        for (trace_id,) in store._query("SELECT DISTINCT trace_id FROM spans"):  # noqa: SLF001
            out.extend(s for s in store.trace(trace_id) if not s.is_run)
        return out
    finally:
        store.close()


def task_spans_by_id(spans: list[SpanRecord]) -> dict[str, list[SpanRecord]]:
    out: dict[str, list[SpanRecord]] = defaultdict(list)
    for span in spans:
        if span.name.startswith("task ") and "cicd.pipeline.task.run.id" in span.attributes:
            out[str(span.attributes["cicd.pipeline.task.run.id"])].append(span)
    return out
