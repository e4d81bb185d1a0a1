"""The span store API: ``SpanStore`` over a backend (SQLite file by default, PostgreSQL when configured).

Writes are idempotent on (trace_id, span_id): a span reported twice is one row, the later copy winning
unless it is an after-the-fact placeholder and the stored one is live (see ``SpanRecord.quality``).
``SpanStore(home / "traces.db")`` opens the server named by ``PIPETRACE_STORE`` when one is set (see
``target.py``), so every caller works on both backends unchanged.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..util.numbers import percentile
from . import schema, target
from .backend import UPSERT, Backend, SqliteBackend, is_corruption  # noqa: F401 - re-exported
from .records import SpanRecord, derived_columns, dumps, resource_json

RUN_MARGIN_NS = 86_400 * 10**9  # run listings count a run's spans that start within a day of the run span
SCHEMA = schema.MIGRATIONS["sqlite"][schema.SPANS][0]  # kept for importers; schema.py owns it
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


def _where(fixed: list[str], *optional: tuple[str, Any]) -> tuple[str, list[Any]]:
    """A WHERE clause: the ``fixed`` conditions and each ``(condition, value)`` whose value is set."""
    chosen = [(clause, value) for clause, value in optional if value]
    return " AND ".join([*fixed, *(clause for clause, _ in chosen)]), [value for _, value in chosen]


@dataclass
class TaskPercentiles:
    """Attempts of one (pipeline, task), how many failed, and the median and p95 duration."""

    pipeline: str | None
    task: str
    count: int
    failures: int
    p50_ms: float
    p95_ms: float


@dataclass
class TaskStats(TaskPercentiles):
    """:class:`TaskPercentiles` plus mean, max and the durations themselves (over the last N attempts)."""

    mean_ms: float
    max_ms: float
    durations_ms: list[float] = field(default_factory=list, repr=False)


def _row(rec: SpanRecord) -> tuple[Any, ...]:
    return (
        rec.trace_id, rec.span_id, rec.parent_span_id, rec.name, rec.kind, rec.start_ns, rec.end_ns,
        rec.status, rec.status_message, *derived_columns(rec.name, rec.kind, rec.attributes),
        dumps(rec.attributes), dumps(rec.events) if rec.events else "[]",
        dumps(rec.links) if rec.links else "[]", resource_json(rec.resource, rec.resource), rec.scope,
    )


def _record(row: Sequence[Any]) -> SpanRecord:
    return SpanRecord(
        trace_id=row[0], span_id=row[1], parent_span_id=row[2], name=row[3], kind=row[4], start_ns=row[5],
        end_ns=row[6], status=row[7], status_message=row[8], attributes=json.loads(row[9]),
        events=json.loads(row[10]), links=json.loads(row[11]), resource=json.loads(row[12]), scope=row[13],
    )


class SpanStore:
    """Read and write access to one store. One instance per process; thread-safe."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 60.0, repair: bool = False,
                 backend: Backend | None = None) -> None:
        self.path = Path(path)
        self.repair = repair
        self.busy_timeout_s = busy_timeout_s
        if backend is None:
            pg = target.for_path(self.path)
            if pg is not None:
                from .postgres import PostgresBackend

                backend = PostgresBackend(pg, component=schema.SPANS)
                self.path.parent.mkdir(parents=True, exist_ok=True)  # the home still holds local files
            else:
                backend = SqliteBackend(self.path, busy_timeout_s=busy_timeout_s, repair=repair)
        self.backend = backend

    @classmethod
    def local(cls, path: str | os.PathLike[str], **kw: Any) -> SpanStore:
        """Always the SQLite file at ``path``, whatever ``PIPETRACE_STORE`` says (the write buffer)."""
        return cls(path, backend=SqliteBackend(path, busy_timeout_s=kw.pop("busy_timeout_s", 60.0), **kw))

    @property
    def dialect(self) -> str:
        return self.backend.dialect

    @property
    def _lock(self) -> Any:
        return self.backend.lock  # type: ignore[attr-defined]

    def _connect(self) -> Any:
        return self.backend.connect()  # type: ignore[attr-defined]

    def _retry(self, fn: Any) -> Any:
        retry = getattr(self.backend, "retry", None)
        return retry(fn) if retry is not None else fn()

    def quarantine(self, reason: BaseException) -> Path:
        """Move a corrupted store file (and its WAL) aside so a fresh one can be written; keep it for forensics."""
        if isinstance(self.backend, SqliteBackend):
            return self.backend.quarantine(reason)
        return self.path

    def close(self) -> None:
        self.backend.close()

    def describe(self) -> str:
        """Where the store is, safe to print (no password)."""
        return self.backend.describe()

    @property
    def buffer_path(self) -> Path:
        """The local SQLite file spans wait in while a PostgreSQL store is unreachable."""
        return self.path.with_name("buffer.db")

    def write(self, records: Iterable[SpanRecord]) -> int:
        rows = []
        for n, rec in enumerate(records, 1):
            if n % 32 == 0:
                time.sleep(0)  # release the GIL between chunks of Python work (a task may be waiting)
            rows.append(_row(rec))
        if not rows:
            return 0

        self.backend.write_spans(rows)
        return len(rows)

    def write_rows(self, rows: Sequence[tuple[Any, ...]]) -> int:
        """Write rows already encoded (``backend.SPAN_COLUMNS`` order, e.g. ``records.readable_row``)."""
        if rows:
            self.backend.write_spans(rows)
        return len(rows)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.backend.query(sql, params)

    # ---- queries -------------------------------------------------------------------------------------
    def count(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM spans")[0][0])

    def resolve(self, ident: str) -> str | None:
        """A trace id from a trace id (hex) or a run id (of a run span, else of any span of the run)."""
        return self._locate(ident)[0]

    def _locate(self, ident: str) -> tuple[str | None, tuple[str, tuple[int, ...]]]:
        """The trace id for ``ident`` and the condition that finds its spans (see ``Backend.trace_range``)."""
        ident = ident.strip()
        low = ident.lower()
        if len(low) == 32 and all(c in "0123456789abcdef" for c in low):
            where = self.backend.trace_range(low)
            if where is not None:
                return low, where
        trace_id = self.backend.trace_of_run(ident)
        where = self.backend.trace_range(trace_id) if trace_id is not None else None
        return (trace_id, where) if where is not None else (None, ("", ()))

    def trace(self, ident: str) -> list[SpanRecord]:
        trace_id, (extra, bounds) = self._locate(ident)
        if trace_id is None:
            return []
        rows = self._query(f"SELECT {COLUMNS} FROM spans WHERE trace_id=?{extra} ORDER BY start_ns, span_id",
                           (trace_id, *bounds))
        return [_record(r) for r in rows]

    def runs(self, *, pipeline: str | None = None, system: str | None = None, status: str | None = None,
             since_ns: int | None = None, limit: int = 50) -> list[RunSummary]:
        """Runs newest first: one row per run span, plus traces still in progress (no run span yet)."""
        where, params = _where(["is_run=1"], (self.backend.glob("pipeline"), pipeline and self.backend.glob_param(
            pipeline)), ("system=?", system), ("result=?", status), ("start_ns>=?", since_ns))
        rows = self._query(
            f"SELECT trace_id, span_id, system, pipeline, run_id, result, status, start_ns, end_ns FROM spans "
            f"WHERE {where} ORDER BY start_ns DESC LIMIT ?", (*params, limit))
        runs: list[RunSummary] = []
        trace_ids = sorted({r[0] for r in rows})
        # a run's spans start within its run span, give or take a day of stragglers and clock skew
        window = (min(r[7] for r in rows) - RUN_MARGIN_NS, max(r[8] for r in rows) + RUN_MARGIN_NS) if rows else None
        agg = self._trace_aggregates(trace_ids, window)
        for trace_id, span_id, sys_, pipe, run_id, result, st, start, end in rows:
            count, systems, _, _ = agg.get(trace_id, (0, [], start, end))
            runs.append(RunSummary(trace_id, span_id, sys_, systems, pipe, run_id,
                                   result or ("failure" if st == "ERROR" else "success"),
                                   start, max(0, end - start) / 1e6, count))
        if not status or status == "running":
            # with `limit` finished runs, an in-progress trace starting before the oldest of them cannot
            # make the page: only the spans since then are grouped (not the whole store)
            bound = rows[-1][7] if len(rows) >= limit else None
            runs.extend(self._in_progress(pipeline, system, since_ns, limit, bound_ns=bound))
        runs.sort(key=lambda r: r.start_ns, reverse=True)
        return runs[:limit]

    def _trace_aggregates(self, trace_ids: Sequence[str],
                          window: tuple[int, int] | None = None) -> dict[str, tuple[int, list[str], int, int]]:
        """Span count, systems, first start and last end per trace; ``window`` bounds the start times
        looked at (PostgreSQL then probes only the day partitions in it, not every one)."""
        out: dict[str, tuple[int, list[str], int, int]] = {}
        extra, bounds = ("AND start_ns BETWEEN ? AND ? ", window) if window else ("", ())
        for i in range(0, len(trace_ids), 500):
            chunk = trace_ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for tid, n, systems, lo, hi in self._query(
                f"SELECT trace_id, COUNT(*), {self.backend.distinct_list('system')}, MIN(start_ns), MAX(end_ns) "
                f"FROM spans WHERE trace_id IN ({marks}) {extra}GROUP BY trace_id", (*chunk, *bounds)):
                out[tid] = (n, sorted(set((systems or "").split(",")) - {""}), lo, hi)
        return out

    def _in_progress(self, pipeline: str | None, system: str | None, since_ns: int | None,
                     limit: int, *, bound_ns: int | None = None) -> list[RunSummary]:
        if bound_ns is None:
            rows = self._query(
                "SELECT trace_id FROM spans GROUP BY trace_id HAVING MAX(is_run)=0 "
                "ORDER BY MIN(start_ns) DESC LIMIT ?", (limit,))
            ids = [r[0] for r in rows]
        else:
            # traces with a span since the bound; the ones with a run span (maybe before the bound) or an
            # earlier first span are dropped below, so the window only narrows where to look
            # no DISTINCT in SQL: it would make SQLite scan the whole table in key order instead of the
            # start-time index range
            window = list(dict.fromkeys(r[0] for r in self._query(
                "SELECT trace_id FROM spans WHERE start_ns >= ?", (bound_ns,))))
            finished: set[str] = set()
            for i in range(0, len(window), 500):
                chunk = window[i:i + 500]
                marks = ",".join("?" * len(chunk))
                # a run span older than that leaves its trace's first start before the bound: dropped below
                finished.update(r[0] for r in self._query(
                    f"SELECT DISTINCT trace_id FROM spans WHERE is_run=1 AND trace_id IN ({marks}) "
                    f"AND start_ns >= ?", (*chunk, bound_ns - RUN_MARGIN_NS)))
            ids = [t for t in window if t not in finished]
        agg = self._trace_aggregates(ids)
        if bound_ns is not None:
            ids = sorted((t for t in ids if agg[t][2] >= bound_ns), key=lambda t: agg[t][2], reverse=True)[:limit]
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
        where, params = _where(["task IS NOT NULL", "is_run=0", "name LIKE 'task %'"], ("pipeline=?", pipeline),
                               ("task=?", task))
        rows = self._query(
            f"SELECT pipeline, task, end_ns-start_ns, status FROM spans WHERE {where} "
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
                                 percentile(durs, 0.5), percentile(durs, 0.95), sum(durs) / len(durs),
                                 durs[-1], durs))
        return out


def _glob(value: str, pattern: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(value, pattern)
