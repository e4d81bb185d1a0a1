"""Store helpers for analysis: deletes (retention), the anomaly-flag and alert-state tables, lean scans.

Kept apart from ``sqlite.py`` so the span table's writer stays small; every function takes a
:class:`SpanStore` and goes through its backend (SQLite or PostgreSQL); the tables are in ``schema.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .backend import Conn
from .sqlite import SpanStore

T = TypeVar("T")
PERCENTILE_WORK_MEM = "128MB"  # PostgreSQL: memory for the per-task duration arrays of one p95 query

# Covering index for the duration scans of baselines, p95s and audits: they read only these columns, so
# SQLite never touches the wide span rows (attributes/events JSON). Created on first analysis use.
DURATION_INDEX = ("CREATE INDEX IF NOT EXISTS spans_task_duration "
                  "ON spans (pipeline, task, is_run, start_ns, end_ns, status, name)")


def _run(store: SpanStore, fn: Callable[[Conn], T], *, write: bool = False) -> T:
    """Run ``fn(conn)`` through the store's backend (lock, retry; one transaction if writing)."""
    return store.backend.run(fn, write=write)


def ensure_schema(store: SpanStore, *, duration_index: bool = True) -> None:
    """Create the analysis tables (and the covering duration index) if missing; cheap when present.

    The tables come with the schema's migrations; the SQLite covering index is made on first use."""
    if duration_index and store.dialect == "sqlite":
        _run(store, lambda conn: conn.execute(DURATION_INDEX))
    else:
        store._query("SELECT 1")  # noqa: SLF001 - opens (and migrates) the store


# ---- sizes ------------------------------------------------------------------------------------------
def file_bytes(store: SpanStore) -> int:
    """Bytes on disk: the SQLite database plus its WAL and shared-memory files (PostgreSQL: the schema's
    tables and indexes)."""
    return store.backend.size_bytes()


def free_bytes(store: SpanStore) -> int:
    """Bytes held by free pages (reusable by new spans, returned to the OS by VACUUM)."""
    return store.backend.free_bytes()


def vacuum(store: SpanStore) -> None:
    store.backend.vacuum()


def drop_before(store: SpanStore, cutoff_ns: int) -> int:
    """Retention by age: every span started before ``cutoff_ns`` goes (PostgreSQL drops whole day
    partitions); their anomaly flags go with them. Returns spans removed."""
    return store.backend.drop_before(cutoff_ns)


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
    rows = store._query(  # noqa: SLF001
        "SELECT trace_id, span_id, pipeline, run_id, result, status, end_ns, "
        f"{store.backend.json_text('attributes', sampled_attr)} FROM spans WHERE is_run=1")
    return [RunRow(r[0], r[1], r[2], r[3], r[4], r[5], int(r[6]), r[7] in (0, "0", "false", "False"))
            for r in rows]


def delete_traces(store: SpanStore, trace_ids: Sequence[str], *, chunk: int = 500,
                  progress: Callable[[int], None] | None = None) -> int:
    """Delete every span of ``trace_ids`` (and their anomaly flags); returns spans deleted.

    One short transaction per chunk so live writers are never blocked for long. On PostgreSQL the day
    partitions that hold only these traces are dropped whole first (``drop_days_of``); per-trace
    deletes are left for the traces on the boundary days."""
    deleted = 0
    drop_days_of = getattr(store.backend, "drop_days_of", None)
    if drop_days_of is not None and trace_ids:
        deleted, left = drop_days_of(trace_ids, time.time_ns())
        if progress is not None:
            progress(len(trace_ids) - len(left))
        trace_ids = left
    for i in range(0, len(trace_ids), chunk):
        part = list(trace_ids[i:i + chunk])

        def rm(conn: Conn, part: list[str] = part) -> int:
            return store.backend.delete_traces(conn, part)

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


def duration_percentiles(store: SpanStore, pipeline: str | None = None) -> list[tuple[Any, ...]] | None:
    """``(pipeline, task, count, failures, p50_ms, p95_ms)`` per task computed by the server (PostgreSQL's
    ``percentile_cont``, same interpolation as ``util.numbers.percentile``), or None where the caller should
    compute them itself (SQLite: reading the covering index into Python is faster there)."""
    if store.dialect == "sqlite":
        return None
    where = ["is_run=0", "task IS NOT NULL", "name LIKE 'task %'"]
    params: list[Any] = []
    if pipeline:
        where.append("pipeline=?")
        params.append(pipeline)
    # one pass over the task-span index into a hash table of float8 arrays (no sort of every row by its
    # text group key), then each task's durations sorted on their own; float8, not numeric, to sort fast
    sql = ("SELECT pipeline, task, n, failures, "
           "(SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(d) x), "
           "(SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY x) FROM unnest(d) x) FROM ("
           "SELECT pipeline, task, COUNT(*) AS n, SUM(CASE WHEN status='ERROR' THEN 1 ELSE 0 END) AS failures, "
           f"array_agg((end_ns - start_ns)::float8 / 1e6) AS d FROM spans WHERE {' AND '.join(where)} "
           "GROUP BY pipeline, task) g ORDER BY pipeline NULLS FIRST, task")

    def query(conn: Conn) -> list[tuple[Any, ...]]:
        conn.execute(f"SET LOCAL work_mem = '{PERCENTILE_WORK_MEM}'")  # the arrays stay in memory
        return list(conn.execute(sql, params).fetchall())

    return _run(store, query, write=True)


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
    update = ", ".join(f"{c}=excluded.{c}" for c in ANOMALY_COLUMNS.split(", ")[2:])
    set_attrs = store.backend.json_set_two("attributes", score_attr, baseline_attr)

    def put(conn: Conn) -> None:
        conn.executemany(f"INSERT INTO anomalies ({ANOMALY_COLUMNS}) VALUES ({marks}) "
                         f"ON CONFLICT (trace_id, span_id) DO UPDATE SET {update}", rows)
        conn.executemany(
            f"UPDATE spans SET attributes={set_attrs} WHERE trace_id=? AND span_id=?",
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
    def put(conn: Conn) -> None:
        conn.execute("INSERT INTO alerts_sent (key, rule, sent_ns, payload) VALUES (?,?,?,?) ON CONFLICT (key) "
                     "DO UPDATE SET rule=excluded.rule, sent_ns=excluded.sent_ns, payload=excluded.payload",
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
