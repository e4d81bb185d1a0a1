"""Store helpers for analysis: deletes (retention), the anomaly-flag and alert-state tables, lean scans.

Kept apart from ``sqlite.py`` so the span table's writer stays small; every function takes a
:class:`SpanStore` and uses its connection, lock and busy-retry.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .sqlite import SpanStore

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS anomalies (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    pipeline TEXT,
    task TEXT,
    name TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    baseline_ms REAL NOT NULL,
    score REAL NOT NULL,
    basis TEXT NOT NULL,
    detected_ns INTEGER NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS anomalies_start ON anomalies (start_ns);
CREATE TABLE IF NOT EXISTS alerts_sent (
    key TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    sent_ns INTEGER NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_sent_rule ON alerts_sent (rule, sent_ns);
"""

# Covering index for the duration scans of baselines, p95s and audits: they read only these columns, so
# SQLite never touches the wide span rows (attributes/events JSON). Created on first analysis use.
DURATION_INDEX = ("CREATE INDEX IF NOT EXISTS spans_task_duration "
                  "ON spans (pipeline, task, is_run, start_ns, end_ns, status, name)")


def _run(store: SpanStore, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
    """Run ``fn(conn)`` under the store's lock with busy-retry, in an IMMEDIATE transaction if writing."""

    def attempt() -> T:
        conn = store._connect()  # noqa: SLF001
        if not write:
            return fn(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            out = fn(conn)
            conn.execute("COMMIT")
            return out
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    with store._lock:  # noqa: SLF001
        return store._retry(attempt)  # type: ignore[no-any-return]  # noqa: SLF001


def ensure_schema(store: SpanStore, *, duration_index: bool = True) -> None:
    """Create the analysis tables (and the covering duration index) if missing; cheap when present."""

    def make(conn: sqlite3.Connection) -> None:
        conn.executescript(SCHEMA)
        if duration_index:
            conn.execute(DURATION_INDEX)

    _run(store, make)


# ---- sizes ------------------------------------------------------------------------------------------
def file_bytes(store: SpanStore) -> int:
    """Bytes on disk: the database plus its WAL and shared-memory files."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += os.path.getsize(f"{store.path}{suffix}")
        except OSError:
            pass
    return total


def free_bytes(store: SpanStore) -> int:
    """Bytes held by free pages (reusable by new spans, returned to the OS by VACUUM)."""
    def q(conn: sqlite3.Connection) -> int:
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int(free) * int(size)

    return _run(store, q)


def vacuum(store: SpanStore) -> None:
    def q(conn: sqlite3.Connection) -> None:
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    _run(store, q)


# ---- retention --------------------------------------------------------------------------------------
@dataclass
class RunRow:
    """What retention needs to know about one run span."""

    trace_id: str
    span_id: str
    pipeline: str | None
    run_id: str | None
    result: str | None
    status: str
    end_ns: int
    sampled_out: bool


def run_rows(store: SpanStore, sampled_attr: str) -> list[RunRow]:
    path = f'$."{sampled_attr}"'
    rows = store._query(  # noqa: SLF001
        "SELECT trace_id, span_id, pipeline, run_id, result, status, end_ns, "
        f"json_extract(attributes, '{path}') FROM spans WHERE is_run=1")
    return [RunRow(r[0], r[1], r[2], r[3], r[4], r[5], int(r[6]), r[7] in (0, "false", "False"))
            for r in rows]


def delete_traces(store: SpanStore, trace_ids: Sequence[str], *, chunk: int = 500,
                  progress: Callable[[int], None] | None = None) -> int:
    """Delete every span of ``trace_ids`` (and their anomaly flags); returns spans deleted.

    One short transaction per chunk so live writers are never blocked for long."""
    deleted = 0
    for i in range(0, len(trace_ids), chunk):
        part = list(trace_ids[i:i + chunk])
        marks = ",".join("?" * len(part))

        def rm(conn: sqlite3.Connection, part: list[str] = part, marks: str = marks) -> int:
            n = conn.execute(f"DELETE FROM spans WHERE trace_id IN ({marks})", part).rowcount
            conn.execute(f"DELETE FROM anomalies WHERE trace_id IN ({marks})", part)
            return int(n)

        deleted += _run(store, rm, write=True)
        if progress is not None:
            progress(len(part))
    return deleted


def trace_span_rows(store: SpanStore, trace_ids: Sequence[str]) -> dict[str, list[tuple[Any, ...]]]:
    """Full span rows (``COLUMNS`` order) per trace, for archiving before a delete."""
    from .sqlite import COLUMNS

    out: dict[str, list[tuple[Any, ...]]] = {}
    for i in range(0, len(trace_ids), 200):
        part = list(trace_ids[i:i + 200])
        marks = ",".join("?" * len(part))
        for row in store._query(f"SELECT {COLUMNS} FROM spans WHERE trace_id IN ({marks})", part):  # noqa: SLF001
            out.setdefault(row[0], []).append(row)
    return out


# ---- lean scans -------------------------------------------------------------------------------------
def duration_rows(store: SpanStore, *, runs: bool, pipeline: str | None = None) -> list[tuple[Any, ...]]:
    """``(pipeline, task, trace_id, span_id, start_ns, end_ns, status, name)`` of every task span (or run
    span with ``runs=True``), ordered by (pipeline, task, start)."""
    # unary + keeps the planner off spans_run (is_run, start_ns), which would read the wide rows and sort
    where = ["+is_run=1"] if runs else ["+is_run=0", "task IS NOT NULL", "name LIKE 'task %'"]
    params: list[Any] = []
    if pipeline:
        where.append("pipeline=?")
        params.append(pipeline)
    return store._query(  # noqa: SLF001
        f"SELECT pipeline, task, trace_id, span_id, start_ns, end_ns, status, name FROM spans "
        f"WHERE {' AND '.join(where)} ORDER BY pipeline, task, is_run, start_ns", params)


STRUCTURE_COLUMNS = ("trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, is_run, system, "
                     "pipeline, run_id, task, status, result")


def iter_structure(store: SpanStore, *, batch: int = 20_000) -> Iterator[list[tuple[Any, ...]]]:
    """All spans' structural columns, grouped by trace: yields lists of rows, one list per trace.

    Keyset-paginated on the primary key so a huge store is never held in memory at once."""
    last_trace, last_span = "", ""
    pending: list[tuple[Any, ...]] = []
    while True:
        rows = store._query(  # noqa: SLF001
            f"SELECT {STRUCTURE_COLUMNS} FROM spans WHERE (trace_id, span_id) > (?, ?) "
            f"ORDER BY trace_id, span_id LIMIT ?", (last_trace, last_span, batch))
        if not rows:
            break
        for row in rows:
            if pending and pending[0][0] != row[0]:
                yield pending
                pending = []
            pending.append(row)
        last_trace, last_span = rows[-1][0], rows[-1][1]
    if pending:
        yield pending


def iter_links(store: SpanStore, *, batch: int = 5_000) -> Iterator[tuple[str, str, str, Any, Any, list[Any]]]:
    """``(trace_id, span_id, name, pipeline, run_id, links)`` of every span that has links (keyset-paginated)."""
    last_trace, last_span = "", ""
    while True:
        rows = store._query(  # noqa: SLF001
            "SELECT trace_id, span_id, name, pipeline, run_id, links FROM spans WHERE (trace_id, span_id) > (?, ?) "
            "AND links != '[]' ORDER BY trace_id, span_id LIMIT ?", (last_trace, last_span, batch))
        if not rows:
            return
        for row in rows:
            yield row[0], row[1], row[2], row[3], row[4], json.loads(row[5] or "[]")
        last_trace, last_span = rows[-1][0], rows[-1][1]


def existing_spans(store: SpanStore, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which ``(trace_id, span_id)`` pairs are stored."""
    wanted = list(dict.fromkeys(pairs))
    found: set[tuple[str, str]] = set()
    for i in range(0, len(wanted), 200):
        chunk = wanted[i:i + 200]
        cond = " OR ".join("(trace_id=? AND span_id=?)" for _ in chunk)
        rows = store._query(f"SELECT trace_id, span_id FROM spans WHERE {cond}",  # noqa: SLF001
                            [v for pair in chunk for v in pair])
        found.update((r[0], r[1]) for r in rows)
    return found


def trace_count(store: SpanStore) -> int:
    return int(store._query("SELECT COUNT(DISTINCT trace_id) FROM spans")[0][0])  # noqa: SLF001


# ---- anomaly flags ----------------------------------------------------------------------------------
ANOMALY_COLUMNS = ("trace_id, span_id, pipeline, task, name, start_ns, duration_ms, baseline_ms, score, basis, "
                   "detected_ns")


def save_anomalies(store: SpanStore, rows: Iterable[tuple[Any, ...]], score_attr: str,
                   baseline_attr: str) -> int:
    """Upsert flags (``ANOMALY_COLUMNS`` order) and copy score/baseline onto the span's attributes."""
    rows = list(rows)
    if not rows:
        return 0
    marks = ",".join("?" * 11)
    score_path, base_path = f'$."{score_attr}"', f'$."{baseline_attr}"'

    def put(conn: sqlite3.Connection) -> None:
        conn.executemany(f"INSERT OR REPLACE INTO anomalies ({ANOMALY_COLUMNS}) VALUES ({marks})", rows)
        conn.executemany(
            f"UPDATE spans SET attributes=json_set(attributes, '{score_path}', ?, '{base_path}', ?) "
            "WHERE trace_id=? AND span_id=?",
            [(round(r[8], 3), round(r[7], 3), r[0], r[1]) for r in rows])

    _run(store, put, write=True)
    return len(rows)


def load_anomalies(store: SpanStore, *, since_ns: int | None = None, trace_id: str | None = None,
                   limit: int = 1000) -> list[tuple[Any, ...]]:
    where: list[str] = ["1=1"]
    params: list[Any] = []
    if since_ns is not None:
        where.append("start_ns>=?")
        params.append(since_ns)
    if trace_id is not None:
        where.append("trace_id=?")
        params.append(trace_id)
    return store._query(  # noqa: SLF001
        f"SELECT {ANOMALY_COLUMNS} FROM anomalies WHERE {' AND '.join(where)} ORDER BY score DESC LIMIT ?",
        (*params, limit))


# ---- alert state ------------------------------------------------------------------------------------
def alert_seen(store: SpanStore, key: str, since_ns: int) -> bool:
    rows = store._query("SELECT 1 FROM alerts_sent WHERE key=? AND sent_ns>=?", (key, since_ns))  # noqa: SLF001
    return bool(rows)


def alerts_sent_since(store: SpanStore, rule: str, since_ns: int) -> int:
    return int(store._query(  # noqa: SLF001
        "SELECT COUNT(*) FROM alerts_sent WHERE rule=? AND sent_ns>=?", (rule, since_ns))[0][0])


def record_alert(store: SpanStore, key: str, rule: str, sent_ns: int, payload: dict[str, Any]) -> None:
    def put(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT OR REPLACE INTO alerts_sent (key, rule, sent_ns, payload) VALUES (?,?,?,?)",
                     (key, rule, sent_ns, json.dumps(payload, default=str)))

    _run(store, put, write=True)


def task_rows_since(store: SpanStore, since_ns: int) -> list[tuple[Any, ...]]:
    """``(pipeline, task, trace_id, span_id, start_ns, end_ns, status, name)`` of task spans since then."""
    return store._query(  # noqa: SLF001
        "SELECT pipeline, task, trace_id, span_id, start_ns, end_ns, status, name FROM spans "
        "WHERE start_ns>=? AND is_run=0 AND task IS NOT NULL AND name LIKE 'task %' ORDER BY start_ns",
        (since_ns,))


def tasks_of_traces(store: SpanStore, trace_ids: Sequence[str]) -> dict[str, set[str]]:
    """Task names with a span, per trace."""
    out: dict[str, set[str]] = {t: set() for t in trace_ids}
    for i in range(0, len(trace_ids), 500):
        part = list(trace_ids[i:i + 500])
        marks = ",".join("?" * len(part))
        for trace_id, task in store._query(  # noqa: SLF001
                f"SELECT DISTINCT trace_id, task FROM spans WHERE trace_id IN ({marks}) AND is_run=0 "
                f"AND task IS NOT NULL", part):
            out[trace_id].add(task)
    return out
