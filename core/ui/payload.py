"""JSON documents the viewer's page reads: the runs list, one trace, one task's history.

The same functions feed the live server's API and the data embedded in a single-file report, so both
show exactly the same thing. Times inside a trace are milliseconds from the trace's first start (floats
keep µs precision that way; epoch nanoseconds do not fit a JavaScript number).
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Sequence
from typing import Any

from .. import attributes as A
from ..adapter.message_runs import ATTEMPTS, FAILURES, TASKS, close_ended_runs
from ..analysis.critical_path import critical_span_ids
from ..store import RunSummary, SpanRecord, SpanStore
from ..store.queries import run_span_of, spans_by_ids

HISTORY_RUNS = 200
SPARK_RUNS = 30


def _ms(ns: int, t0: int) -> float:
    return round((ns - t0) / 1e6, 3)


def _pattern(text: str | None) -> str | None:
    """Free text becomes a substring glob; a glob stays as it is."""
    if not text:
        return None
    return text if any(c in text for c in "*?[") else f"*{text}*"


Visible = Callable[[str | None, str | None], bool]


def _scoped_runs(store: SpanStore, scope: Sequence[tuple[str, str | None]] | None, visible: Visible | None,
                 pipeline: str | None, limit: int, system: str | None = None, **filters: Any) -> list[RunSummary]:
    """``store.runs`` limited to what a caller may see: one query per (pipeline glob, system) it holds (so
    runs it may not see never crowd out those it may), then its exact rule, then the caller's own filters."""
    if scope is None:
        return store.runs(pipeline=pipeline, system=system, limit=limit, **filters)
    found: dict[tuple[str, str | None], RunSummary] = {}
    for glob, scope_system in scope:
        if system and scope_system and system != scope_system:
            continue
        for r in store.runs(pipeline=glob, system=system or scope_system, limit=limit, **filters):
            if pipeline and not (r.pipeline and fnmatch.fnmatchcase(r.pipeline, pipeline)):
                continue
            if visible is None or visible(r.system, r.pipeline):
                found[(r.trace_id, r.span_id)] = r
    return sorted(found.values(), key=lambda r: r.start_ns, reverse=True)[:limit]


def runs_document(store: SpanStore, *, system: str | None = None, pipeline: str | None = None,
                  status: str | None = None, since_s: float | None = None, until_s: float | None = None,
                  min_ms: float | None = None, max_ms: float | None = None, limit: int = 200,
                  scope: Sequence[tuple[str, str | None]] | None = None,
                  visible: Visible | None = None) -> dict[str, Any]:
    """Runs newest first after the filters, plus a duration series per pipeline for its sparkline.

    ``scope`` ((pipeline glob, system) pairs) and ``visible(system, pipeline)`` restrict both to what one
    caller may see."""
    since_ns = int(since_s * 1e9) if since_s else None
    close_ended_runs(store)  # Celery/kombu runs that ended since a worker last swept get their run span
    fetched = _scoped_runs(store, scope, visible, _pattern(pipeline), max(limit * 2, limit + 50),
                           system=system or None, status=status or None, since_ns=since_ns)
    rows: list[RunSummary] = []
    for r in fetched:
        if until_s and r.start_ns > until_s * 1e9:
            continue
        if min_ms is not None and r.duration_ms < min_ms:
            continue
        if max_ms is not None and r.duration_ms > max_ms:
            continue
        rows.append(r)
    rows = rows[:limit]
    series: dict[str, list[dict[str, Any]]] = {}
    for r in _scoped_runs(store, scope, visible, None, 1000, system=system or None):
        if r.pipeline is None or (pipeline and not fnmatch.fnmatchcase(r.pipeline, _pattern(pipeline) or "*")):
            continue
        points = series.setdefault(r.pipeline, [])
        if len(points) < SPARK_RUNS:
            points.append({"trace_id": r.trace_id, "start": r.start_ns / 1e9, "duration_ms": round(r.duration_ms, 3),
                           "status": r.status, "system": r.system})
    for points in series.values():
        points.reverse()  # oldest first, as a sparkline reads left to right
    systems = sorted({s for r in fetched for s in r.systems} | {r.system for r in fetched if r.system})
    return {"runs": [r.to_json() for r in rows], "pipelines": series, "systems": systems,
            "now": time.time()}


def _span_json(s: SpanRecord, t0: int, resources: dict[str, int]) -> dict[str, Any]:
    key = repr(sorted(s.resource.items()))
    res = resources.setdefault(key, len(resources))
    out: dict[str, Any] = {
        "id": s.span_id, "parent": s.parent_span_id, "name": s.name, "kind": s.kind,
        "s": _ms(s.start_ns, t0), "d": round(max(0, s.end_ns - s.start_ns) / 1e6, 3),
        "status": s.status, "attrs": s.attributes, "res": res,
    }
    if s.status_message:
        out["msg"] = s.status_message
    if s.events:
        out["events"] = [{"name": e.get("name", ""), "t": _ms(int(e.get("time_ns", s.start_ns)), t0),
                          "attrs": e.get("attributes", {})} for e in s.events]
    if s.links:
        out["links"] = [{"trace": lk["trace_id"], "span": lk["span_id"], "attrs": lk.get("attributes", {})}
                        for lk in s.links]
    if s.scope:
        out["scope"] = s.scope
    return out


def _linked(store: SpanStore, spans: Sequence[SpanRecord]) -> dict[str, dict[str, Any]]:
    """What each link into another trace points at: the span's name and its run, when stored."""
    trace_id = spans[0].trace_id
    pairs = [(lk["trace_id"], lk["span_id"]) for s in spans for lk in s.links if lk["trace_id"] != trace_id]
    if not pairs:
        return {}
    found = {(r.trace_id, r.span_id): r for r in spans_by_ids(store, pairs)}
    runs: dict[str, SpanRecord | None] = {}
    out: dict[str, dict[str, Any]] = {}
    for tid, sid in pairs:
        rec = found.get((tid, sid))
        if tid not in runs:
            runs[tid] = run_span_of(store, tid)
        run = runs[tid]
        out[f"{tid}:{sid}"] = {
            "trace": tid, "span": sid, "stored": rec is not None, "name": rec.name if rec else None,
            "pipeline": (run.pipeline if run else None) or (rec.pipeline if rec else None),
            "run_id": (run.run_id if run else None) or (rec.run_id if rec else None),
            "system": rec.system if rec else None,
        }
    return out


RUN_COUNTS = (TASKS, ATTEMPTS, FAILURES)
"""Run-span counts a message-driven run carries (Celery/kombu), shown in the run's header."""


def _run_info(spans: Sequence[SpanRecord]) -> dict[str, Any]:
    run = next((s for s in spans if s.is_run), None)
    source = run or next((s for s in spans if s.pipeline), spans[0])
    t0 = min(s.start_ns for s in spans)
    t1 = max(s.end_ns for s in spans)
    status = "running"
    if run is not None:
        status = run.result or ("failure" if run.status == "ERROR" else "success")
    counts = {key.rsplit(".", 1)[1]: run.attributes[key] for key in RUN_COUNTS
              if run is not None and isinstance(run.attributes.get(key), int)}
    return {"pipeline": source.pipeline, "run_id": source.run_id, "system": source.system,
            "systems": sorted({s.system for s in spans if s.system}), "status": status,
            "in_progress": run is None, "start": t0 / 1e9, "duration_ms": round((t1 - t0) / 1e6, 3),
            "counts": counts}


def task_keys(spans: Sequence[SpanRecord]) -> list[tuple[str, str]]:
    """(pipeline, task) of every task span in the trace, in first-seen order."""
    keys: dict[tuple[str, str], None] = {}
    for s in spans:
        if s.task and s.pipeline and s.name.startswith("task "):
            keys[(s.pipeline, s.task)] = None
    return list(keys)


def history_document(store: SpanStore, pipeline: str, task: str, last: int = HISTORY_RUNS) -> dict[str, Any]:
    """Durations of one task's recent attempts with p50/p95 (for the histogram)."""
    stats = store.task_stats(pipeline=pipeline, task=task, last=last)
    if not stats:
        return {"pipeline": pipeline, "task": task, "count": 0, "failures": 0, "p50_ms": 0, "p95_ms": 0,
                "durations_ms": []}
    st = stats[0]
    return {"pipeline": pipeline, "task": task, "count": st.count, "failures": st.failures,
            "p50_ms": round(st.p50_ms, 3), "p95_ms": round(st.p95_ms, 3), "mean_ms": round(st.mean_ms, 3),
            "max_ms": round(st.max_ms, 3), "durations_ms": [round(d, 3) for d in st.durations_ms]}


def trace_document(store: SpanStore, ident: str, *, with_history: bool = False,
                   spans: Sequence[SpanRecord] | None = None) -> dict[str, Any] | None:
    """Everything the run page draws for one trace; None if the store has no such trace. ``spans``: the
    trace, when the caller has read it already."""
    spans = spans if spans is not None else store.trace(ident)
    if not spans:
        return None
    t0 = min(s.start_ns for s in spans)
    resources: dict[str, int] = {}
    body = [_span_json(s, t0, resources) for s in spans]
    res_list: list[dict[str, Any]] = [{} for _ in resources]
    for s in spans:
        res_list[resources[repr(sorted(s.resource.items()))]] = s.resource
    doc: dict[str, Any] = {
        "trace_id": spans[0].trace_id, "t0_ms": t0 / 1e6, "t0_ns": str(t0), "run": _run_info(spans),
        "spans": body, "resources": res_list, "critical": critical_span_ids(spans), "linked": _linked(store, spans),
        "tasks": [{"pipeline": p, "task": t} for p, t in task_keys(spans)],
        "queued_attr": A.QUEUED_MS,
    }
    if with_history:
        doc["history"] = {f"{p}\u0000{t}": history_document(store, p, t) for p, t in task_keys(spans)}
    return doc
