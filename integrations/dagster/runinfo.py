"""What one process knows about a Dagster run: its job, upstream caller, assets and step attempts.

Built lazily from the instance (run record + execution-plan snapshot) the first time a process sees
an event of the run, so a step subprocess that saw nothing else still knows everything it needs.
Bounded: at most ``MAX_RUNS`` runs are remembered per process.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import SpanContext
from pipetrace.carriers import span_context_of
from pipetrace.identity import RunIdentity
from pipetrace.util.ratelimit import warn_once_per

from . import names as N
from .names import split_step_key

log = logging.getLogger("pipetrace.dagster")

MAX_RUNS = 256


@dataclass
class RunInfo:
    run_id: str
    job: str
    upstream: SpanContext | None = None
    partition: str | None = None
    # base step key → output name → asset key (user string); only outputs that are assets
    asset_outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    step_keys: list[str] = field(default_factory=list)
    dynamic: bool = False
    start_ts: float | None = None
    saw_run_start: bool = False
    # step key → try number of the last attempt seen in this process
    attempts: dict[str, int] = field(default_factory=dict)
    # step key → number of STEP_UP_FOR_RETRY in the event log (loaded once, only when needed)
    stored_retries: dict[str, int] | None = None

    @property
    def ident(self) -> RunIdentity:
        return RunIdentity(N.SYSTEM, self.job, self.run_id, self.upstream)

    def step_assets(self, step_key: str) -> list[str]:
        return sorted(set(self.asset_outputs.get(split_step_key(step_key)[0], {}).values()))

    def asset_of_output(self, step_key: str, output: str | None) -> str | None:
        return self.asset_outputs.get(split_step_key(step_key)[0], {}).get(output or "")

    def run_attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {N.JOB: self.job, N.RUN_ID: self.run_id}
        if self.partition:
            attrs[N.PARTITION_KEY] = self.partition
        return attrs


def upstream_from_tags(tags: Any) -> SpanContext | None:
    """The caller's span context from the run tags ``traceparent``/``tracestate``; garbage → None
    (and one rate-limited warning from the carrier parser), so the run gets a fresh trace."""
    if not tags or N.TRACEPARENT_TAG not in tags:
        return None
    carrier = {"traceparent": tags[N.TRACEPARENT_TAG]}
    if tags.get(N.TRACESTATE_TAG):
        carrier["tracestate"] = tags[N.TRACESTATE_TAG]
    return span_context_of(carrier, source="dagster run tag traceparent")


def _load(instance: Any, run_id: str, job: str | None) -> RunInfo:
    info = RunInfo(run_id=run_id, job=job or "")
    try:
        run = instance.get_run_by_id(run_id)
    except Exception as exc:
        warn_once_per(log, "dagster-run", "pipetrace: could not read Dagster run %s: %r", run_id, exc)
        run = None
    if run is None:
        return info
    info.job = run.job_name or info.job
    tags = run.tags or {}
    info.upstream = upstream_from_tags(tags)
    info.partition = tags.get(N.PARTITION_TAG)
    try:
        snap_id = run.execution_plan_snapshot_id
        plan = instance.get_execution_plan_snapshot(snap_id) if snap_id else None
    except Exception as exc:
        warn_once_per(log, "dagster-plan", "pipetrace: could not read Dagster plan of %s: %r", run_id, exc)
        plan = None
    if plan is not None:
        for step in plan.steps:
            base = split_step_key(step.key)[0]
            if step.key not in info.step_keys:
                info.step_keys.append(step.key)
            for out in step.outputs:
                props = out.properties
                if props is None:
                    continue
                if props.is_dynamic:
                    info.dynamic = True
                if props.is_asset and props.asset_key is not None:
                    info.asset_outputs.setdefault(base, {})[out.name] = props.asset_key.to_user_string()
            if "[?]" in step.key:
                info.dynamic = True
        if plan.step_keys_to_execute:
            info.step_keys = [k for k in info.step_keys if k in set(plan.step_keys_to_execute)]
    return info


class RunRegistry:
    """Per-process map run id → :class:`RunInfo`, least recently used dropped first."""

    def __init__(self) -> None:
        self._runs: OrderedDict[str, RunInfo] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, instance: Any, run_id: str, job: str | None) -> RunInfo:
        with self._lock:
            info = self._runs.get(run_id)
            if info is not None:
                self._runs.move_to_end(run_id)
                return info
        info = _load(instance, run_id, job)
        with self._lock:
            existing = self._runs.get(run_id)
            if existing is not None:
                return existing
            self._runs[run_id] = info
            while len(self._runs) > MAX_RUNS:
                self._runs.popitem(last=False)
        return info

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def clear(self) -> None:
        with self._lock:
            self._runs.clear()


def stored_retry_counts(instance: Any, run_id: str) -> dict[str, int]:
    """Step key → STEP_UP_FOR_RETRY events stored for the run (one query)."""
    from dagster import DagsterEventType

    counts: dict[str, int] = {}
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY):
        if entry.step_key:
            counts[entry.step_key] = counts.get(entry.step_key, 0) + 1
    return counts
