"""Read-only queries the viewer needs beyond ``SpanStore``'s own (kept apart so sqlite.py stays small)."""

from __future__ import annotations

from collections.abc import Iterable

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
