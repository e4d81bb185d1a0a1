"""SQLite schema v5: the span table keeps four indexes, each query still finds its spans through one, and
a v4 file (five or six indexes) upgrades in place and is read and written as before."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pipetrace.store import SpanRecord, SpanStore, maintenance, schema
from pipetrace.store.backend import UPSERT
from pipetrace.store.sqlite import _row

pytestmark = pytest.mark.sqlite_only

V5_INDEXES = {"spans_start", "spans_any_run_id", "spans_task_duration", "spans_runs"}
V4_INDEXES = {"spans_run", "spans_run_id", "spans_task", "spans_start", "spans_any_run_id"}


def _indexes(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='spans' AND sql IS NOT NULL")}
    finally:
        conn.close()


def _run(n: int, pipeline: str = "nightly", tasks: int = 3) -> list[SpanRecord]:
    """A run span and ``tasks`` task spans of one trace, as an adapter writes them."""
    trace, run_id, start = f"{n + 1:032x}", f"run-{n}", 1_000_000 * (n + 1)
    base = {"pipetrace.system": "dagster", "cicd.pipeline.name": pipeline, "cicd.pipeline.run.id": run_id}
    out = [SpanRecord(trace, f"{n + 1:08x}00000000", None, f"run {pipeline}", "SERVER", start, start + 900,
                      attributes={**base, "cicd.pipeline.result": "success"})]
    out += [SpanRecord(trace, f"{n + 1:08x}{t + 1:08x}", out[0].span_id, f"task t{t}", "INTERNAL", start + t * 10,
                       start + t * 10 + 5 + n, status="ERROR" if t == 1 and n % 2 else "OK",
                       attributes={**base, "cicd.pipeline.task.name": f"t{t}"}) for t in range(tasks)]
    return out


def _plan(store: SpanStore, sql: str, params: tuple[object, ...]) -> str:
    return " | ".join(str(r[3]) for r in store._query(f"EXPLAIN QUERY PLAN {sql}", params))  # noqa: SLF001


def test_a_new_store_keeps_four_indexes_on_the_span_table(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "traces.db")
    store.write(_run(0))
    assert _indexes(store.path) == V5_INDEXES
    assert store.backend.schema_version() == schema.latest(schema.SPANS) == 5
    maintenance.ensure_schema(store)  # analysis's covering index is the task index: nothing added
    assert _indexes(store.path) == V5_INDEXES
    store.close()


@pytest.mark.parametrize("analysed", [False, True], ids=["v4", "v4-after-analysis"])
def test_a_v4_store_upgrades_in_place_and_is_read_and_written_as_before(tmp_path: Path, analysed: bool) -> None:
    db = tmp_path / "traces.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(schema.VERSION_TABLE)
    for script in schema.MIGRATIONS["sqlite"][schema.SPANS][:4]:
        for stmt in schema.statements(script):
            conn.execute(stmt)
    if analysed:
        conn.execute(maintenance.DURATION_INDEX)
    conn.execute("INSERT INTO pipetrace_schema VALUES ('spans', 4)")
    conn.executemany(UPSERT, [_row(r) for n in range(4) for r in _run(n)])  # rows the old schema holds
    conn.close()
    assert _indexes(db) == V4_INDEXES | ({"spans_task_duration"} if analysed else set())
    store = SpanStore(db)
    store.write(_run(4))  # … and a write after the upgrade
    assert store.backend.schema_version() == 5
    assert _indexes(db) == V5_INDEXES
    assert [r.run_id for r in store.runs()] == [f"run-{n}" for n in range(4, -1, -1)]
    assert store.resolve("run-2") == f"{3:032x}"
    stats = {s.task: s for s in store.task_stats(pipeline="nightly")}
    assert sorted(stats) == ["t0", "t1", "t2"] and stats["t1"].count == 5 and stats["t1"].failures == 2
    assert [s.name for s in store.trace("run-4")][0] == "run nightly" and store.count() == 20
    store.close()


def test_each_query_reads_through_an_index_of_its_own(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "traces.db")
    for n in range(40):
        store.write(_run(n, tasks=5))
    # the runs page: run spans newest first, from the partial run index (not every span's start time)
    assert "spans_runs" in _plan(store, "SELECT trace_id FROM spans WHERE is_run=1 ORDER BY start_ns DESC LIMIT 50", ())
    assert "spans_runs" in _plan(
        store, "SELECT trace_id FROM spans WHERE is_run=1 AND pipeline GLOB ? ORDER BY start_ns DESC LIMIT 50",
        ("night*",))
    # a run id: its own few spans (the run-span index would read every run)
    assert "spans_any_run_id" in _plan(
        store, "SELECT trace_id FROM spans WHERE +is_run=1 AND run_id=? ORDER BY +start_ns DESC LIMIT 1", ("run-3",))
    # a task's attempts and the duration scans: the covering task index, no wide row read
    plan = _plan(store, "SELECT pipeline, task, end_ns-start_ns, status FROM spans WHERE task IS NOT NULL AND "
                        "is_run=0 AND name LIKE 'task %' AND pipeline=? AND task=? ORDER BY start_ns DESC",
                 ("nightly", "t1"))
    assert "COVERING INDEX spans_task_duration" in plan and "TEMP B-TREE" not in plan, plan
    assert "spans_runs" in _plan(store, "SELECT end_ns - start_ns FROM spans WHERE is_run=1 AND pipeline=? AND "
                                        "start_ns < ? ORDER BY start_ns DESC LIMIT 5", ("nightly", 2**62))
    assert "spans_start" in _plan(store, "SELECT trace_id FROM spans WHERE start_ns >= ?", (10,))
    assert store.resolve("run-7") == f"{8:032x}"
    store.close()
