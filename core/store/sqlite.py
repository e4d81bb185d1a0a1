"""Embedded span store: one SQLite file in WAL mode, safe with many writer processes.

Writes are idempotent on (trace_id, span_id): a span reported twice is one row, the later copy winning
unless it is an after-the-fact placeholder and the stored one is live (see ``SpanRecord.quality``).
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .records import SpanRecord, dumps

SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT,
    system TEXT,
    pipeline TEXT,
    run_id TEXT,
    task TEXT,
    result TEXT,
    is_run INTEGER NOT NULL DEFAULT 0,
    quality INTEGER NOT NULL DEFAULT 2,
    attributes TEXT NOT NULL,
    events TEXT NOT NULL,
    links TEXT NOT NULL,
    resource TEXT NOT NULL,
    scope TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS spans_run ON spans (is_run, start_ns);
CREATE INDEX IF NOT EXISTS spans_run_id ON spans (run_id) WHERE is_run = 1;
CREATE INDEX IF NOT EXISTS spans_task ON spans (pipeline, task);
CREATE INDEX IF NOT EXISTS spans_start ON spans (start_ns);
CREATE INDEX IF NOT EXISTS spans_any_run_id ON spans (run_id);
"""

UPSERT = """
INSERT INTO spans (trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status, status_message,
                   system, pipeline, run_id, task, result, is_run, quality, attributes, events, links,
                   resource, scope)
VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (trace_id, span_id) DO UPDATE SET
    parent_span_id=excluded.parent_span_id, name=excluded.name, kind=excluded.kind,
    start_ns=excluded.start_ns, end_ns=excluded.end_ns, status=excluded.status,
    status_message=excluded.status_message, system=excluded.system, pipeline=excluded.pipeline,
    run_id=excluded.run_id, task=excluded.task, result=excluded.result, is_run=excluded.is_run,
    quality=excluded.quality, attributes=excluded.attributes, events=excluded.events,
    links=excluded.links, resource=excluded.resource, scope=excluded.scope
WHERE excluded.quality >= spans.quality
"""

COLUMNS = ("trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status, status_message, "
           "attributes, events, links, resource, scope")


@dataclass
class RunSummary:
    trace_id: str
    span_id: str | None
    system: str | None
    systems: list[str]
    pipeline: str | None
    run_id: str | None
    status: str
    start_ns: int
    duration_ms: float
    span_count: int
    in_progress: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id, "span_id": self.span_id, "system": self.system,
            "systems": self.systems, "pipeline": self.pipeline, "run_id": self.run_id,
            "status": self.status, "start": self.start_ns / 1e9, "duration_ms": round(self.duration_ms, 3),
            "span_count": self.span_count, "in_progress": self.in_progress,
        }


@dataclass
class TaskStats:
    pipeline: str | None
    task: str
    count: int
    failures: int
    p50_ms: float
    p95_ms: float
    mean_ms: float
    max_ms: float
    durations_ms: list[float] = field(default_factory=list, repr=False)


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _row(rec: SpanRecord) -> tuple[Any, ...]:
    return (
        rec.trace_id, rec.span_id, rec.parent_span_id, rec.name, rec.kind, rec.start_ns, rec.end_ns,
        rec.status, rec.status_message, rec.system, rec.pipeline, rec.run_id, rec.task, rec.result,
        1 if rec.is_run else 0, rec.quality, dumps(rec.attributes), dumps(rec.events) if rec.events else "[]",
        dumps(rec.links) if rec.links else "[]", _resource_json(rec.resource), rec.scope,
    )


_resource_json_cache: dict[int, tuple[dict[str, Any], str]] = {}


def _resource_json(resource: dict[str, Any]) -> str:
    cached = _resource_json_cache.get(id(resource))
    if cached is not None and cached[0] is resource:
        return cached[1]
    if len(_resource_json_cache) > 64:
        _resource_json_cache.clear()
    text = dumps(resource)
    _resource_json_cache[id(resource)] = (resource, text)
    return text


def _record(row: Sequence[Any]) -> SpanRecord:
    return SpanRecord(
        trace_id=row[0], span_id=row[1], parent_span_id=row[2], name=row[3], kind=row[4], start_ns=row[5],
        end_ns=row[6], status=row[7], status_message=row[8], attributes=json.loads(row[9]),
        events=json.loads(row[10]), links=json.loads(row[11]), resource=json.loads(row[12]), scope=row[13],
    )


class SpanStore:
    """Read and write access to one store file. One instance per process; thread-safe."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 60.0, repair: bool = False) -> None:
        self.path = Path(path)
        self.repair = repair
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = self._open()
        except sqlite3.DatabaseError as exc:
            if not (self.repair and is_corruption(exc)):
                raise
            self.quarantine(exc)
            conn = self._open()
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout_s, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            self._retry(lambda: conn.execute("PRAGMA journal_mode=WAL"))
            conn.execute("PRAGMA synchronous=NORMAL")
            self._retry(lambda: conn.executescript(SCHEMA))
        except BaseException:
            conn.close()
            raise
        return conn

    def quarantine(self, reason: BaseException) -> Path:
        """Move a corrupted store file (and its WAL) aside so a fresh one can be written; keep it for forensics."""
        import logging

        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
            target = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}-{os.getpid()}")
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.path) + suffix)
                if src.exists():
                    try:
                        src.rename(Path(str(target) + suffix))
                    except FileNotFoundError:  # another writer process moved it first
                        pass
            logging.getLogger("pipetrace.store").warning(
                "pipetrace: store %s is corrupted (%s); moved it to %s and started a new one",
                self.path, reason, target)
            return target

    def _retry(self, fn: Any) -> Any:
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01 + random.random() * 0.05)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def write(self, records: Iterable[SpanRecord]) -> int:
        rows = []
        for n, rec in enumerate(records, 1):
            if n % 32 == 0:
                time.sleep(0)  # release the GIL between chunks of Python work (a task may be waiting)
            rows.append(_row(rec))
        if not rows:
            return 0

        def txn() -> None:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(UPSERT, rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        with self._lock:
            self._retry(txn)
        return len(rows)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            conn = self._connect()
            return self._retry(lambda: conn.execute(sql, params).fetchall())  # type: ignore[no-any-return]

    # ---- queries -------------------------------------------------------------------------------------
    def count(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM spans")[0][0])

    def resolve(self, ident: str) -> str | None:
        """A trace id from a trace id (hex) or a run id (of a run span, else of any span of the run)."""
        ident = ident.strip()
        low = ident.lower()
        if len(low) == 32 and all(c in "0123456789abcdef" for c in low):
            if self._query("SELECT 1 FROM spans WHERE trace_id=? LIMIT 1", (low,)):
                return low
        rows = self._query(
            "SELECT trace_id FROM spans WHERE is_run=1 AND run_id=? ORDER BY +start_ns DESC LIMIT 1", (ident,)
        )
        if not rows:  # a run without its run span yet (in progress, or a Celery/kombu run not closed yet)
            rows = self._query("SELECT trace_id FROM spans WHERE run_id=? ORDER BY start_ns DESC LIMIT 1", (ident,))
        return rows[0][0] if rows else None

    def trace(self, ident: str) -> list[SpanRecord]:
        trace_id = self.resolve(ident)
        if trace_id is None:
            return []
        rows = self._query(f"SELECT {COLUMNS} FROM spans WHERE trace_id=? ORDER BY start_ns, span_id",
                           (trace_id,))
        return [_record(r) for r in rows]

    def runs(self, *, pipeline: str | None = None, system: str | None = None, status: str | None = None,
             since_ns: int | None = None, limit: int = 50) -> list[RunSummary]:
        """Runs newest first: one row per run span, plus traces still in progress (no run span yet)."""
        where: list[str] = ["is_run=1"]
        params: list[Any] = []
        if pipeline:
            where.append("pipeline GLOB ?")
            params.append(pipeline)
        if system:
            where.append("system=?")
            params.append(system)
        if status:
            where.append("result=?")
            params.append(status)
        if since_ns:
            where.append("start_ns>=?")
            params.append(since_ns)
        rows = self._query(
            f"SELECT trace_id, span_id, system, pipeline, run_id, result, status, start_ns, end_ns FROM spans "
            f"WHERE {' AND '.join(where)} ORDER BY start_ns DESC LIMIT ?", (*params, limit))
        runs: list[RunSummary] = []
        trace_ids = sorted({r[0] for r in rows})
        agg = self._trace_aggregates(trace_ids)
        for trace_id, span_id, sys_, pipe, run_id, result, st, start, end in rows:
            count, systems, _, _ = agg.get(trace_id, (0, [], start, end))
            runs.append(RunSummary(trace_id, span_id, sys_, systems, pipe, run_id,
                                   result or ("failure" if st == "ERROR" else "success"),
                                   start, max(0, end - start) / 1e6, count))
        if not status or status == "running":
            runs.extend(self._in_progress(pipeline, system, since_ns, limit))
        runs.sort(key=lambda r: r.start_ns, reverse=True)
        return runs[:limit]

    def _trace_aggregates(self, trace_ids: Sequence[str]) -> dict[str, tuple[int, list[str], int, int]]:
        out: dict[str, tuple[int, list[str], int, int]] = {}
        for i in range(0, len(trace_ids), 500):
            chunk = trace_ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for tid, n, systems, lo, hi in self._query(
                f"SELECT trace_id, COUNT(*), GROUP_CONCAT(DISTINCT system), MIN(start_ns), MAX(end_ns) "
                f"FROM spans WHERE trace_id IN ({marks}) GROUP BY trace_id", chunk):
                out[tid] = (n, sorted(set((systems or "").split(",")) - {""}), lo, hi)
        return out

    def _in_progress(self, pipeline: str | None, system: str | None, since_ns: int | None,
                     limit: int) -> list[RunSummary]:
        rows = self._query(
            "SELECT trace_id FROM spans GROUP BY trace_id HAVING MAX(is_run)=0 "
            "ORDER BY MIN(start_ns) DESC LIMIT ?", (limit,))
        ids = [r[0] for r in rows]
        agg = self._trace_aggregates(ids)
        out = []
        for tid in ids:
            sample = self._query(
                "SELECT system, pipeline, run_id FROM spans WHERE trace_id=? AND pipeline IS NOT NULL "
                "ORDER BY start_ns LIMIT 1", (tid,))
            sys_, pipe, run_id = sample[0] if sample else (None, None, None)
            n, systems, lo, hi = agg[tid]
            if pipeline and not (pipe and _glob(pipe, pipeline)):
                continue
            if system and sys_ != system:
                continue
            if since_ns and lo < since_ns:
                continue
            out.append(RunSummary(tid, None, sys_, systems, pipe, run_id, "running", lo,
                                  max(0, hi - lo) / 1e6, n, in_progress=True))
        return out

    def task_stats(self, pipeline: str | None = None, task: str | None = None,
                   last: int = 1000) -> list[TaskStats]:
        """Per (pipeline, task): count, failures and duration percentiles over the ``last`` attempts."""
        where: list[str] = ["task IS NOT NULL", "is_run=0", "name LIKE 'task %'"]
        params: list[Any] = []
        if pipeline:
            where.append("pipeline=?")
            params.append(pipeline)
        if task:
            where.append("task=?")
            params.append(task)
        rows = self._query(
            f"SELECT pipeline, task, end_ns-start_ns, status FROM spans WHERE {' AND '.join(where)} "
            f"ORDER BY start_ns DESC", params)
        groups: dict[tuple[str | None, str], list[tuple[float, bool]]] = {}
        for pipe, tsk, dur, st in rows:
            bucket = groups.setdefault((pipe, tsk), [])
            if len(bucket) < last:
                bucket.append((dur / 1e6, st == "ERROR"))
        out = []
        for (pipe, tsk), values in sorted(groups.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
            durs = sorted(v for v, _ in values)
            out.append(TaskStats(pipe, tsk, len(values), sum(1 for _, e in values if e),
                                 _percentile(durs, 0.5), _percentile(durs, 0.95), sum(durs) / len(durs),
                                 durs[-1], durs))
        return out


def is_corruption(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError) and (
        "not a database" in text or "malformed" in text or "corrupt" in text)


def _glob(value: str, pattern: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(value, pattern)
