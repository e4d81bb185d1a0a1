"""Alert rules evaluated against the store, deduplicated and rate-limited through a table in the store
(so ``alerts check`` from cron and a long-running ``alerts watch`` never send the same alert twice)."""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..store import SpanStore
from ..store import maintenance as M
from .alert_config import AlertConfig, Rule
from .baselines import _median
from .sinks import SinkError, send

log = logging.getLogger("pipetrace.alerts")
HOUR_NS = 3600 * 10**9


@dataclass
class Alert:
    rule: str
    type: str
    key: str  # dedup identity: rule + subject
    message: str
    trace_id: str | None = None
    pipeline: str | None = None
    task: str | None = None
    severity: str = "warning"
    details: dict[str, Any] = field(default_factory=dict)

    def payload(self, viewer_url: str) -> dict[str, Any]:
        link = f"{viewer_url.rstrip('/')}/#/run/{self.trace_id}" if self.trace_id else None
        return {"rule": self.rule, "type": self.type, "severity": self.severity, "message": self.message,
                "trace_id": self.trace_id, "pipeline": self.pipeline, "task": self.task,
                "viewer_link": link, "details": self.details, "key": self.key}


@dataclass
class CheckReport:
    fired: list[Alert] = field(default_factory=list)       # sent now
    duplicates: list[Alert] = field(default_factory=list)  # already sent within the dedup window
    limited: list[Alert] = field(default_factory=list)     # over the rule's rate limit
    failed: list[tuple[Alert, str]] = field(default_factory=list)


def _match(value: str | None, pattern: str) -> bool:
    return fnmatch.fnmatchcase(value or "", pattern)


def _slow_runs(store: SpanStore, rule: Rule, now_ns: int) -> list[Alert]:
    since = now_ns - int(rule.window_s * 1e9)
    out: list[Alert] = []
    rows = [r for r in M.duration_rows(store, runs=True) if _match(r[0], rule.pipeline)]
    by_pipeline: dict[str, list[tuple[Any, ...]]] = {}
    for r in rows:
        by_pipeline.setdefault(r[0] or "", []).append(r)
    for pipeline, runs in by_pipeline.items():
        for i, (_, _, trace_id, _, start, end, _, _) in enumerate(runs):
            if end < since or end > now_ns:
                continue
            earlier = sorted((r[5] - r[4]) / 1e6 for r in runs[max(0, i - 50):i])
            if len(earlier) < rule.min_history:
                continue
            median = _median(earlier)
            duration = (end - start) / 1e6
            if median > 0 and duration > median * rule.factor:
                out.append(Alert(rule.name, rule.type, f"{rule.name}|{trace_id}",
                                 f"run of {pipeline} took {duration / 1000:.1f}s, {duration / median:.1f}× its "
                                 f"median {median / 1000:.1f}s", trace_id, pipeline, severity=rule.severity,
                                 details={"duration_ms": duration, "baseline_ms": median}))
    return out


def _error_rate(store: SpanStore, rule: Rule, now_ns: int) -> list[Alert]:
    since = now_ns - int(rule.window_s * 1e9)
    groups: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for r in M.task_rows_since(store, since):
        if _match(r[0], rule.pipeline) and _match(r[1], rule.task):
            groups.setdefault((r[0] or "", r[1]), []).append(r)
    out = []
    bucket = now_ns // max(1, int(rule.window_s * 1e9))
    for (pipeline, task), rows in groups.items():
        failed = [r for r in rows if r[6] == "ERROR"]
        if len(rows) >= rule.min_count and len(failed) / len(rows) >= rule.threshold:
            out.append(Alert(rule.name, rule.type, f"{rule.name}|{pipeline}|{task}|{bucket}",
                             f"{pipeline}.{task}: {len(failed)}/{len(rows)} attempts failed in the last "
                             f"{rule.window_s / 3600:g} h", failed[-1][2], pipeline, task, rule.severity,
                             {"failures": len(failed), "attempts": len(rows)}))
    return out


def _deadline(store: SpanStore, rule: Rule, now_ns: int) -> list[Alert]:
    out: list[Alert] = []
    if rule.max_duration_s is not None:
        for run in store.runs(status="running", limit=10_000):
            if not run.in_progress or not _match(run.pipeline, rule.pipeline):
                continue
            age = (now_ns - run.start_ns) / 1e9
            if age > rule.max_duration_s:
                out.append(Alert(rule.name, rule.type, f"{rule.name}|{run.trace_id}",
                                 f"run {run.run_id} of {run.pipeline} still running after {age / 60:.0f} min",
                                 run.trace_id, run.pipeline, severity=rule.severity,
                                 details={"running_s": age, "run_id": run.run_id}))
    if rule.by:
        hh, mm = (int(x) for x in rule.by.split(":"))
        now = time.localtime(now_ns / 1e9)
        midnight = time.mktime((now.tm_year, now.tm_mon, now.tm_mday, 0, 0, 0, 0, 0, -1))
        deadline_ns = int((midnight + hh * 3600 + mm * 60) * 1e9)
        if now_ns < deadline_ns:
            return out
        day_ns = int(midnight * 1e9)
        pipelines = {r[0] for r in M.duration_rows(store, runs=True) if _match(r[0], rule.pipeline)}
        for pipeline in sorted(p for p in pipelines if p):
            finished = [r for r in M.duration_rows(store, runs=True, pipeline=pipeline)
                        if day_ns <= r[5] <= deadline_ns]
            if not finished:
                late = [r for r in store.runs(pipeline=pipeline, status="running", limit=100) if r.in_progress]
                out.append(Alert(rule.name, rule.type, f"{rule.name}|{pipeline}|{time.strftime('%Y-%m-%d', now)}",
                                 f"no run of {pipeline} finished by {rule.by} today"
                                 + (f"; {len(late)} still running" if late else ""),
                                 late[0].trace_id if late else None, pipeline, severity=rule.severity))
    return out


def _stopped_tracing(store: SpanStore, rule: Rule, now_ns: int) -> list[Alert]:
    out: list[Alert] = []
    runs = [r for r in M.duration_rows(store, runs=True) if _match(r[0], rule.pipeline)]
    by_pipeline: dict[str, list[str]] = {}
    for r in runs:  # ordered by start within a pipeline
        by_pipeline.setdefault(r[0] or "", []).append(r[2])
    for pipeline, traces in by_pipeline.items():
        recent, earlier = traces[-rule.runs:], traces[-rule.runs - 20:-rule.runs]
        if len(recent) < rule.runs or len(earlier) < 5:
            continue
        tasks = M.tasks_of_traces(store, recent + earlier)
        counts: dict[str, int] = {}
        for t in earlier:
            for task in tasks[t]:
                counts[task] = counts.get(task, 0) + 1
        regular = {task for task, n in counts.items() if n >= 0.8 * len(earlier) and _match(task, rule.task)}
        seen_recently = set().union(*(tasks[t] for t in recent))
        for task in sorted(regular - seen_recently):
            out.append(Alert(rule.name, rule.type, f"{rule.name}|{pipeline}|{task}",
                             f"{pipeline}.{task} has no span in the last {rule.runs} runs (it had one in "
                             f"{counts[task]}/{len(earlier)} before)", recent[-1], pipeline, task, rule.severity))
    return out


def _secrets(store: SpanStore, rule: Rule, now_ns: int) -> list[Alert]:
    """One alert per trace of the window whose stored spans hold something a detector calls a secret
    (data stored with redaction off or under older rules). Names fields and detectors, never values."""
    from .secrets_audit import audit_secrets

    report = audit_secrets(store, since_ns=now_ns - int(rule.window_s * 1e9))
    by_trace: dict[str, list[Any]] = {}
    for f in report.findings:
        if _match(f.pipeline, rule.pipeline):
            by_trace.setdefault(f.trace_id, []).append(f)
    out: list[Alert] = []
    for trace_id, findings in sorted(by_trace.items()):
        first = findings[0]
        detectors = sorted({f.detector for f in findings})
        out.append(Alert(rule.name, rule.type, f"{rule.name}|{trace_id}",
                         f"{len(findings)} possible secret(s) stored in {first.pipeline or 'a trace'} run "
                         f"{first.run_id or trace_id} ({', '.join(detectors)}); mask with "
                         f"`pipetrace audit --secrets --mask`", trace_id, first.pipeline, None, rule.severity,
                         details={"findings": [f.to_json() for f in findings[:20]]}))
    return out


EVALUATORS: dict[str, Callable[[SpanStore, Rule, int], list[Alert]]] = {
    "slow_run": _slow_runs, "error_rate": _error_rate, "deadline": _deadline, "stopped_tracing": _stopped_tracing,
    "secrets": _secrets,
}


def evaluate(store: SpanStore, config: AlertConfig, now_ns: int | None = None) -> list[Alert]:
    now_ns = now_ns if now_ns is not None else time.time_ns()
    out: list[Alert] = []
    for rule in config.rules:
        out.extend(EVALUATORS[rule.type](store, rule, now_ns))
    return out


def check(store: SpanStore, config: AlertConfig, *, now_ns: int | None = None, dry_run: bool = False) -> CheckReport:
    """Evaluate every rule once and deliver what is new, within each rule's rate limit."""
    now_ns = now_ns if now_ns is not None else time.time_ns()
    M.ensure_schema(store, duration_index=False)
    report = CheckReport()
    rules = {r.name: r for r in config.rules}
    for alert in evaluate(store, config, now_ns):
        rule = rules[alert.rule]
        if M.alert_seen(store, alert.key, now_ns - int(config.dedup_window_s * 1e9)):
            report.duplicates.append(alert)
            continue
        if M.alerts_sent_since(store, rule.name, now_ns - HOUR_NS) >= rule.max_per_hour:
            report.limited.append(alert)
            continue
        if dry_run:
            report.fired.append(alert)
            continue
        payload = alert.payload(config.viewer_url)
        delivered = False
        for sink in config.sinks_for(rule):
            try:
                send(sink, payload)
                delivered = True
            except SinkError as exc:
                report.failed.append((alert, str(exc)))
        if delivered:
            M.record_alert(store, alert.key, rule.name, now_ns, payload)
            report.fired.append(alert)
    return report


def watch(store: SpanStore, config: AlertConfig, *, interval_s: float = 60.0, stop: threading.Event | None = None,
          on_report: Callable[[CheckReport], None] | None = None) -> None:
    """``check`` every ``interval_s`` until ``stop`` is set; a failing round is logged, not fatal."""
    stop = stop or threading.Event()
    while not stop.is_set():
        try:
            report = check(store, config)
            if on_report is not None:
                on_report(report)
        except Exception as exc:
            log.error("pipetrace alerts: check failed: %r", exc)
        stop.wait(interval_s)
