"""Read-only queries the viewer needs beyond ``SpanStore``'s own (kept apart so sqlite.py stays small)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .records import SpanRecord
from .sqlite import COLUMNS, SpanStore, _record


def spans_by_ids(store: SpanStore, pairs: Iterable[tuple[str, str]], limit: int = 500) -> list[SpanRecord]:
    """The stored spans for ``(trace_id, span_id)`` pairs (missing ones are simply absent).

    Used to name the targets of links into other traces without loading those whole traces."""
    wanted = list(dict.fromkeys((t.lower(), s.lower()) for t, s in pairs))[:limit]
    out: list[SpanRecord] = []
    for i in range(0, len(wanted), 200):
        chunk = wanted[i:i + 200]
        cond = " OR ".join("(trace_id=? AND span_id=?)" for _ in chunk)
        params = [v for pair in chunk for v in pair]
        out.extend(_record(r) for r in store._query(f"SELECT {COLUMNS} FROM spans WHERE {cond}", params))
    return out


def run_span_of(store: SpanStore, trace_id: str) -> SpanRecord | None:
    """The run span of a trace, if it has ended (to title a linked run)."""
    rows = store._query(f"SELECT {COLUMNS} FROM spans WHERE trace_id=? AND is_run=1 LIMIT 1", (trace_id,))
    return _record(rows[0]) if rows else None


def run_durations(store: SpanStore, pipeline: str, before_ns: int | None, exclude_trace: str | None,
                  last: int) -> list[int]:
    """Durations (ns) of the pipeline's last ``last`` runs that started before ``before_ns`` (tail
    sampling's slow-run history; a run is never judged against its future)."""
    rows = store._query(  # noqa: SLF001
        "SELECT end_ns - start_ns FROM spans WHERE is_run=1 AND pipeline=? AND start_ns < ? "
        "AND trace_id != ? ORDER BY start_ns DESC LIMIT ?",
        (pipeline, before_ns if before_ns is not None else 2**62, exclude_trace or "", last))
    return [int(r[0]) for r in rows]


def traces_of_systems_since(store: SpanStore, systems: Sequence[str], since_ns: int, limit: int = 5000) -> list[str]:
    """Trace ids with a span of one of ``systems`` started at or after ``since_ns`` (the run-closer's
    candidates: a range scan on the start-time index)."""
    marks = ",".join("?" * len(systems))
    rows = store._query(f"SELECT DISTINCT trace_id FROM spans WHERE start_ns>=? AND system IN ({marks}) LIMIT ?",
                        (since_ns, *systems, limit))
    return [r[0] for r in rows]


def traces_with_run_span(store: SpanStore, trace_ids: Sequence[str]) -> set[str]:
    """Those of ``trace_ids`` that already have a run span."""
    out: set[str] = set()
    for i in range(0, len(trace_ids), 500):
        chunk = list(trace_ids[i:i + 500])
        marks = ",".join("?" * len(chunk))
        out.update(r[0] for r in store._query(
            f"SELECT DISTINCT trace_id FROM spans WHERE is_run=1 AND trace_id IN ({marks})", chunk))
    return out


def trace_activity(store: SpanStore, trace_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Per trace: (span count, latest end) — what changes when a trace gets a new span."""
    out: dict[str, tuple[int, int]] = {}
    for i in range(0, len(trace_ids), 500):
        chunk = list(trace_ids[i:i + 500])
        marks = ",".join("?" * len(chunk))
        for tid, n, last in store._query(
                f"SELECT trace_id, COUNT(*), MAX(end_ns) FROM spans WHERE trace_id IN ({marks}) GROUP BY trace_id",
                chunk):
            out[tid] = (int(n), int(last))
    return out


def spans_of_traces(store: SpanStore, trace_ids: Sequence[str]) -> dict[str, list[SpanRecord]]:
    """Every span of each of ``trace_ids``, in start order (one query per 200 traces, not one each)."""
    out: dict[str, list[SpanRecord]] = {t: [] for t in trace_ids}
    for i in range(0, len(trace_ids), 200):
        chunk = list(trace_ids[i:i + 200])
        marks = ",".join("?" * len(chunk))
        for row in store._query(f"SELECT {COLUMNS} FROM spans WHERE trace_id IN ({marks}) ORDER BY start_ns, span_id",
                                chunk):
            rec = _record(row)
            out[rec.trace_id].append(rec)
    return out
