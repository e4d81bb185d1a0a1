import multiprocessing as mp
import time
from pathlib import Path

import pipetrace
from pipetrace import attributes as A
from pipetrace.store import SpanStore

PER_PROCESS = 5000


def _writer(home: str, worker: int, ready, go) -> None:  # runs in a spawned process
    import logging

    import pipetrace as pt

    logging.basicConfig(level=logging.WARNING)
    pt.configure(home=home, exporters="store", max_queue_size=PER_PROCESS * 2)
    ready.set()
    go.wait(30)
    for i in range(PER_PROCESS):
        with pt.task_span("python", "load", f"run-{worker}", f"task-{i % 50}", map_index=i):
            pass
    assert pt.force_flush(60)
    stats = pt.stats()["store"]
    assert stats["dropped"] == 0 and stats["failed"] == 0, stats
    pt.shutdown(10)


def test_four_processes_write_at_once_exactly_20000_rows(tmp_path: Path, capfd) -> None:
    ctx = mp.get_context("spawn")
    ready = [ctx.Event() for _ in range(4)]
    go = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), n, ready[n], go)) for n in range(4)]
    for p in procs:
        p.start()
    for event in ready:
        assert event.wait(60)
    go.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = SpanStore(tmp_path / "traces.db")
    assert store.count() == 4 * PER_PROCESS
    pids = {r[0] for r in store._query("SELECT DISTINCT json_extract(resource, '$.\"process.pid\"') FROM spans")}
    assert len(pids) == 4
    assert "database is locked" not in capfd.readouterr().err


def test_runs_query_summarises_each_run(traced) -> None:
    t0 = time.time()
    for run in ("a1", "a2"):
        with pipetrace.task_span("python", "etl", run, "extract"):
            pass
        with pipetrace.task_span("celery", "worker", run, "remote", parent=pipetrace.run_context("python", "etl", run)):
            pass
        pipetrace.run_span("python", "etl", run, start=t0, end=t0 + 2, result="success" if run == "a1" else "failure")
    with pipetrace.task_span("python", "other", "b1", "still running"):
        pass
    traced.flush()
    runs = traced.store.runs()
    by_id = {r.run_id: r for r in runs}
    assert set(by_id) == {"a1", "a2", "b1"}
    assert by_id["a1"].status == "success" and by_id["a2"].status == "failure"
    assert by_id["a1"].systems == ["celery", "python"]
    assert by_id["a1"].span_count == 3
    assert abs(by_id["a1"].duration_ms - 2000) < 1
    assert by_id["b1"].in_progress and by_id["b1"].status == "running" and by_id["b1"].pipeline == "other"
    assert [r.run_id for r in traced.store.runs(status="failure")] == ["a2"]
    assert {r.run_id for r in traced.store.runs(pipeline="et*")} == {"a1", "a2"}
    assert len(traced.store.runs(limit=1)) == 1


def test_task_stats_percentiles(traced) -> None:
    ident = pipetrace.run_identity("python", "stats", "r")
    for i in range(1, 101):
        pipetrace.record_span(ident, ident.task_span_id("t", i), "task t", start=0.0, end=i / 1000,
                              attributes={A.TASK_NAME: "t", A.PIPELINE_NAME: "stats"}, synthetic=False)
    traced.flush()
    (stats,) = traced.store.task_stats(pipeline="stats")
    assert stats.count == 100
    assert abs(stats.p50_ms - 50.5) < 0.01
    assert abs(stats.p95_ms - 95.05) < 0.01
    assert stats.max_ms == 100


def test_trace_lookup_by_run_id_and_trace_id(traced) -> None:
    pipetrace.run_span("python", "etl", "lookup-me", start=0.0, end=1.0, result="success")
    traced.flush()
    tid = f"{pipetrace.run_identity('python', 'etl', 'lookup-me').trace_id:032x}"
    assert traced.store.resolve("lookup-me") == tid
    assert traced.store.resolve(tid.upper()) == tid
    assert traced.store.trace("nope") == []


def test_a_new_store_file_has_large_pages_and_an_old_one_keeps_its_own(tmp_path: Path) -> None:
    """Span rows (~1-1.5 KB) fit an 8 KB page whole (a 4 KB page spills each to an overflow page of its
    own); a store made before keeps its page size and is read and written as before."""
    import sqlite3

    from pipetrace.store.backend import PAGE_SIZE
    from pipetrace.store.records import SpanRecord

    def record(n: int) -> SpanRecord:
        return SpanRecord(f"{n:032x}", f"{n:016x}", None, "task t", "INTERNAL", n, n + 1,
                          attributes={"k": "v" * 1200})

    fresh = SpanStore.local(tmp_path / "new" / "traces.db")  # SQLite whatever PIPETRACE_STORE says
    fresh.write([record(1)])
    old_path = tmp_path / "old" / "traces.db"
    old_path.parent.mkdir()
    with sqlite3.connect(old_path) as conn:
        conn.execute("PRAGMA page_size=4096")
        conn.execute("PRAGMA journal_mode=WAL")
    old = SpanStore.local(old_path)
    old.write([record(1), record(2)])
    assert PAGE_SIZE == 8192
    assert fresh._query("PRAGMA page_size")[0][0] == PAGE_SIZE
    assert old._query("PRAGMA page_size")[0][0] == 4096
    assert fresh.count() == 1 and old.count() == 2
    assert old.trace(f"{2:032x}")[0].attributes == {"k": "v" * 1200}


def test_the_writer_checkpoints_its_wal_every_4000_pages_in_wal_mode_with_normal_sync(tmp_path: Path) -> None:
    """A run's commit rewrites the same index pages as the one before: checkpoints four times rarer than
    SQLite's default (1,000 pages) copy them a quarter as often (see ``backend.WAL_CHECKPOINT_PAGES``)."""
    from pipetrace.store.backend import WAL_CHECKPOINT_PAGES

    store = SpanStore.local(tmp_path / "traces.db")
    assert WAL_CHECKPOINT_PAGES == 4000
    assert store._query("PRAGMA wal_autocheckpoint")[0][0] == WAL_CHECKPOINT_PAGES
    assert store._query("PRAGMA journal_mode")[0][0] == "wal" and store._query("PRAGMA synchronous")[0][0] == 1
