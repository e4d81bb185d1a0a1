"""Coverage audit: is every run one well-formed trace, and does it hold a span for every task?

Checks per trace: orphans (a parent id that never arrived), several roots, children outside their
parent's time window beyond a clock-skew tolerance (consumer spans are exempt: a message can be
processed after its producer span ended), runs without task spans or missing some, traces still
without a run span long after their last span (the run's end was never reported), and dangling data
links: a hand-off link (one with ``pipetrace.link.kind``) whose target span is not in the store.

Expected tasks of a run come from the orchestrator's own record when an adapter offers one (entry
point group ``pipetrace.task_records``: name = system, value = ``callable(pipeline, run_id)`` returning
task names or None), otherwise from the pipeline's history in the store: the tasks present in at least
half of its runs (a conditional branch that rarely runs is not "missing").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..identity import derive_run_span_id, format_span_id
from ..store import SpanStore
from ..store import maintenance as M
from ..util.ratelimit import warn_once_per
from .findings import FindingsReport

log = logging.getLogger("pipetrace.audit")

ORPHAN, ROOTS, OUTSIDE, NO_TASKS, MISSING, NO_RUN_SPAN, DANGLING = (
    "orphan", "several-roots", "outside-parent", "run-without-tasks", "missing-tasks", "no-run-span",
    "dangling-link")
LINK_KIND = "pipetrace.link.kind"
TaskRecord = Callable[[str, str], "Iterable[str] | None"]


@dataclass
class Finding:
    kind: str
    trace_id: str
    detail: str
    span_id: str | None = None
    pipeline: str | None = None
    run_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "trace_id": self.trace_id, "span_id": self.span_id,
                "pipeline": self.pipeline, "run_id": self.run_id, "detail": self.detail}


@dataclass
class Coverage:
    runs: int = 0
    expected: int = 0
    traced: int = 0
    source: str = "history"

    @property
    def percent(self) -> float:
        return 100.0 * self.traced / self.expected if self.expected else 100.0


@dataclass
class AuditReport(FindingsReport[Finding]):
    runs: int = 0
    in_progress: int = 0
    coverage: dict[str, Coverage] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return self.tally()

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "runs": self.runs, "in_progress": self.in_progress,
                "coverage": {p: {"runs": c.runs, "expected_tasks": c.expected, "traced_tasks": c.traced,
                                 "percent": round(c.percent, 2), "source": c.source}
                             for p, c in sorted(self.coverage.items())}}


def task_record_sources() -> dict[str, TaskRecord]:
    """Adapters' readers of the orchestrator's task list, by system name."""
    from importlib.metadata import entry_points

    out: dict[str, TaskRecord] = {}
    for ep in entry_points(group="pipetrace.task_records"):
        try:
            out[ep.name] = ep.load()
        except Exception as exc:
            warn_once_per(log, f"task-records-{ep.name}", "pipetrace: cannot load %s: %r", ep.value, exc)
    return out


@dataclass
class _Run:
    trace_id: str
    system: str | None
    pipeline: str
    run_id: str
    tasks: set[str]


def audit(store: SpanStore, *, skew_ms: float = 1000.0, stale_after_s: float = 86400.0,
          now_ns: int | None = None, sources: dict[str, TaskRecord] | None = None,
          progress: Callable[[int, int], None] | None = None) -> AuditReport:
    now_ns = now_ns if now_ns is not None else time.time_ns()
    sources = task_record_sources() if sources is None else sources
    skew = int(skew_ms * 1e6)
    report = AuditReport()
    total = M.trace_count(store)
    runs: list[_Run] = []
    for rows in M.iter_structure(store):
        report.traces += 1
        report.spans += len(rows)
        _check_trace(rows, skew, stale_after_s, now_ns, report, runs)
        if progress is not None and report.traces % 500 == 0:
            progress(report.traces, total)
    if progress is not None:
        progress(report.traces, total)
    _check_tasks(runs, sources, report)
    _check_links(store, report)
    return report


def _check_links(store: SpanStore, report: AuditReport) -> None:
    """A data link must point at a stored span (the attempt that produced the data)."""
    links: list[tuple[tuple[str, ...], tuple[str, str]]] = []
    for trace_id, span_id, name, pipeline, run_id, span_links in M.iter_links(store):
        for lk in span_links:
            if not isinstance(lk, dict) or LINK_KIND not in (lk.get("attributes") or {}):
                continue
            target = (str(lk.get("trace_id", "")).lower(), str(lk.get("span_id", "")).lower())
            links.append(((trace_id, span_id, name, pipeline or "", run_id or "", lk["attributes"][LINK_KIND]),
                          target))
    stored = M.existing_spans(store, {target for _, target in links})
    for (trace_id, span_id, name, pipeline, run_id, kind), target in links:
        if target not in stored:
            report.findings.append(Finding(
                DANGLING, trace_id, f"{name}: {kind} link to span {target[1]} (trace {target[0]}) not stored",
                span_id, pipeline or None, run_id or None))


def _check_trace(rows: list[tuple[Any, ...]], skew: int, stale_after_s: float, now_ns: int,
                 report: AuditReport, runs: list[_Run]) -> None:
    # rows: trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, is_run, system, pipeline,
    #       run_id, task, status, result
    trace_id = rows[0][0]
    by_id = {r[1]: r for r in rows}
    run_rows = [r for r in rows if r[7]]
    if not run_rows:
        report.in_progress += 1
        last = max(r[6] for r in rows)
        if now_ns - last > stale_after_s * 1e9:
            sample = next((r for r in rows if r[9]), rows[0])
            report.findings.append(Finding(
                NO_RUN_SPAN, trace_id, f"no run span, last span ended {(now_ns - last) / 3.6e12:.1f} h ago",
                pipeline=sample[9], run_id=sample[10]))
    awaited: set[str] = set()  # run span ids a trace in progress legitimately waits for
    if not run_rows:
        for r in rows:
            if r[8] and r[9] and r[10]:
                awaited.add(format_span_id(derive_run_span_id(r[8], r[9], r[10])))
    roots = []
    for r in rows:
        parent_id = r[2]
        if parent_id is None:
            roots.append(r)
            continue
        parent = by_id.get(parent_id)
        if parent is None:
            if r[7]:
                roots.append(r)  # a run called from outside the store (upstream caller): its root
            elif parent_id not in awaited:
                report.findings.append(Finding(ORPHAN, trace_id, f"{r[3]}: parent {parent_id} never arrived",
                                               r[1], r[9], r[10]))
            continue
        if r[4] != "CONSUMER" and (r[5] < parent[5] - skew or r[6] > parent[6] + skew):
            lead = max(0, parent[5] - r[5]) / 1e6
            lag = max(0, r[6] - parent[6]) / 1e6
            report.findings.append(Finding(
                OUTSIDE, trace_id, f"{r[3]} outside {parent[3]}: starts {lead:.0f} ms early, "
                f"ends {lag:.0f} ms late", r[1], r[9], r[10]))
    if len(roots) > 1:
        names = ", ".join(sorted(r[3] for r in roots)[:5])
        report.findings.append(Finding(ROOTS, trace_id, f"{len(roots)} roots: {names}",
                                       pipeline=roots[0][9], run_id=roots[0][10]))
    for run in run_rows:
        report.runs += 1
        pipeline, run_id = run[9] or "?", run[10] or "?"
        tasks = {r[11] for r in rows if r[11] and not r[7] and r[9] == run[9] and r[10] == run[10]
                 and str(r[3]).startswith("task ")}
        runs.append(_Run(trace_id, run[8], pipeline, run_id, tasks))


def _check_tasks(runs: list[_Run], sources: dict[str, TaskRecord], report: AuditReport) -> None:
    seen: dict[str, dict[str, int]] = {}
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.pipeline] = counts.get(run.pipeline, 0) + 1
        bucket = seen.setdefault(run.pipeline, {})
        for task in run.tasks:
            bucket[task] = bucket.get(task, 0) + 1
    usual = {p: {t for t, n in tasks.items() if n * 2 >= counts[p]} for p, tasks in seen.items()}
    for run in runs:
        cov = report.coverage.setdefault(run.pipeline, Coverage())
        cov.runs += 1
        expected: set[str] | None = None
        reader = sources.get(run.system or "")
        if reader is not None:
            try:
                listed = reader(run.pipeline, run.run_id)
                expected = set(listed) if listed is not None else None
            except Exception as exc:
                warn_once_per(log, f"task-records-call-{run.system}", "pipetrace: task record read failed: %r", exc)
            if expected is not None:
                cov.source = "orchestrator"
        if expected is None:
            expected = usual.get(run.pipeline, set())
        cov.expected += len(expected)
        cov.traced += len(expected & run.tasks)
        if not run.tasks and expected:
            report.findings.append(Finding(NO_TASKS, run.trace_id, f"run has no task spans ({len(expected)} "
                                           f"expected)", pipeline=run.pipeline, run_id=run.run_id))
        elif expected - run.tasks:
            missing = sorted(expected - run.tasks)
            report.findings.append(Finding(MISSING, run.trace_id, "tasks without spans: " + ", ".join(missing[:10]),
                                           pipeline=run.pipeline, run_id=run.run_id))
