"""Dagster runs and steps as pipetrace spans: the one place that speaks pipetrace's model.

Takes plain values (step keys, try numbers, timestamps, error summaries) from :mod:`.events` and keeps
the live step spans of this process. A step span is started and made current when the step starts
and ended when it succeeds, fails or goes up for retry, all in the process (and thread) that runs the
step, so user spans inside the op nest under it.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode
from pipetrace import attributes as A
from pipetrace.processing.runtime import force_flush
from pipetrace.redaction.text import status_description
from pipetrace.spans import end_task_span, link, record_span, run_span, start_task_span
from pipetrace.util.ratelimit import warn_once_per

from . import names as N
from .names import op_name, split_step_key
from .runinfo import RunInfo

log = logging.getLogger("pipetrace.dagster")


@dataclass(frozen=True)
class ErrorSummary:
    """What Dagster tells about a failure (its SerializableErrorInfo, flattened)."""

    type: str
    message: str
    stacktrace: str = ""


@dataclass(frozen=True)
class StepEvent:
    """One stored step event, for what the run end reconstructs (batches, steps that never ran)."""

    step_key: str
    kind: str  # start | end | skip
    ts: float
    failed: bool = False


@dataclass
class _Open:
    span: Span
    token: object
    try_number: int


def _step_attributes(info: RunInfo, step_key: str) -> dict[str, Any]:
    base, mapping = split_step_key(step_key)
    attrs: dict[str, Any] = {N.JOB: info.job, N.RUN_ID: info.run_id, N.STEP_KEY: step_key,
                             N.OP: op_name(step_key), A.TASK_NAME: base}
    if mapping is not None:
        attrs[N.MAPPING_KEY] = mapping
        attrs[A.MAP_KEY] = mapping  # shown as `task process [alpha]`, like Airflow's map index
    assets = info.step_assets(step_key)
    if assets:
        attrs[N.ASSET_KEY] = assets[0] if len(assets) == 1 else assets
    if info.partition:
        attrs[N.PARTITION_KEY] = info.partition
    return attrs


def _record_error(span: Span, error: ErrorSummary, result: str) -> None:
    span.add_event("exception", {"exception.type": error.type, "exception.message": error.message,
                                 "exception.stacktrace": error.stacktrace, "exception.escaped": True})
    span.set_attribute(A.ERROR_TYPE, error.type)
    span.set_attribute(A.TASK_RESULT, result)
    span.set_status(Status(StatusCode.ERROR, status_description(f"{error.type}: {error.message}")))


def _detach(token: object) -> None:
    """Restore the context from before the step; quiet if Dagster moved us to another context."""
    if isinstance(token, contextvars.Token):
        try:
            token.var.reset(token)
        except (ValueError, RuntimeError):
            pass
    else:
        otel_context.detach(token)  # type: ignore[arg-type]


class StepTracker:
    """The live step spans of this process, keyed by (run id, step key)."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], _Open] = {}
        self._lock = threading.Lock()

    def open_count(self) -> int:
        return len(self._open)

    def step_started(self, info: RunInfo, step_key: str, try_number: int, ts: float) -> None:
        base, mapping = split_step_key(step_key)
        span = start_task_span(
            N.SYSTEM, info.job, info.run_id, step_key, try_number=try_number,
            attributes=_step_attributes(info, step_key), upstream=info.upstream,
            batch=base if mapping is not None else None, start_time=ts,
        )
        if span.is_recording():
            span.update_name(A.task_span_name(base))
        token = otel_context.attach(trace.set_span_in_context(span))
        info.attempts[step_key] = try_number
        with self._lock:
            stale = self._open.pop((info.run_id, step_key), None)
            self._open[(info.run_id, step_key)] = _Open(span, token, try_number)
        if stale is not None:  # a start without an end: close it rather than leak it
            end_task_span(stale.span, result=A.RESULT_ERROR)

    def current(self, run_id: str, step_key: str) -> Span | None:
        with self._lock:
            entry = self._open.get((run_id, step_key))
        return entry.span if entry is not None else None

    def input_loaded(self, info: RunInfo, step_key: str, upstream_key: str, output: str | None,
                     input_name: str, upstream_try: int) -> None:
        span = self.current(info.run_id, step_key)
        if span is None or not span.is_recording():
            return
        asset = info.asset_of_output(upstream_key, output)
        ident = info.ident
        sc = ident.span_context(ident.task_span_id(upstream_key, None, upstream_try))
        attrs: dict[str, Any] = {N.STEP_KEY: upstream_key, N.INPUT: input_name}
        if output:
            attrs[N.OUTPUT] = output
        if asset:
            attrs[N.ASSET_KEY] = asset
        lk = link(sc, "asset" if asset else "result", attrs)
        if lk is not None:
            span.add_link(lk.context, lk.attributes)

    def asset_materialized(self, info: RunInfo, step_key: str, asset_key: str, partition: str | None) -> None:
        span = self.current(info.run_id, step_key)
        if span is None or not span.is_recording():
            return
        attrs = getattr(span, "attributes", None) or {}
        existing = attrs.get(N.ASSET_KEY)
        keys = [existing] if isinstance(existing, str) else list(existing or ())
        if asset_key not in keys:
            keys.append(asset_key)
        span.set_attribute(N.ASSET_KEY, keys[0] if len(keys) == 1 else sorted(keys))
        if partition:
            span.set_attribute(N.PARTITION_KEY, partition)

    def step_finished(self, info: RunInfo, step_key: str, ts: float, result: str,
                      error: ErrorSummary | None = None) -> None:
        with self._lock:
            entry = self._open.pop((info.run_id, step_key), None)
        if entry is None:
            # Ended where it never started (the orchestrator reporting a dead step process): an
            # after-the-fact span with the same derived id; a live span from the step wins over it.
            self._record_orphan_end(info, step_key, ts, result, error)
            return
        _detach(entry.token)
        if error is not None and entry.span.is_recording():
            _record_error(entry.span, error, result)
            end_task_span(entry.span, end_time=ts)
        else:
            end_task_span(entry.span, result=result, end_time=ts)
        if not info.saw_run_start:
            # A step subprocess: it exits right after the step, make sure the span is out.
            force_flush(5)

    def _record_orphan_end(self, info: RunInfo, step_key: str, ts: float, result: str,
                           error: ErrorSummary | None) -> None:
        base, mapping = split_step_key(step_key)
        ident = info.ident
        try_number = info.attempts.get(step_key, 1)
        attrs = _step_attributes(info, step_key)
        attrs.update({A.SYSTEM: N.SYSTEM, A.PIPELINE_NAME: info.job, A.PIPELINE_RUN_ID: info.run_id,
                      A.TRY_NUMBER: try_number})
        parent = ident.batch_span_id(base) if mapping is not None else ident.run_span_id
        record_span(ident, ident.task_span_id(step_key, None, try_number), A.task_span_name(base),
                    start=ts, end=ts, parent_span_id=parent, attributes=attrs, result=result,
                    error=f"{error.type}: {error.message}" if error else None)

    def step_skipped(self, info: RunInfo, step_key: str, ts: float, reason: str) -> None:
        base, mapping = split_step_key(step_key)
        ident = info.ident
        attrs = _step_attributes(info, step_key)
        attrs.update({A.SYSTEM: N.SYSTEM, A.PIPELINE_NAME: info.job, A.PIPELINE_RUN_ID: info.run_id,
                      A.TRY_NUMBER: 1, N.SKIP_REASON: reason})
        parent = ident.batch_span_id(base) if mapping is not None else ident.run_span_id
        record_span(ident, ident.task_span_id(step_key, None, 1), A.task_span_name(base), start=ts, end=ts,
                    parent_span_id=parent, attributes=attrs, result=A.RESULT_SKIP)

    def run_ended(self, info: RunInfo, start: float, end: float, result: str, error_type: str | None,
                  step_events: Iterable[StepEvent] | None) -> None:
        """Batch spans of dynamic steps, steps that never ran, then the run span (once, here)."""
        if step_events is not None:
            events = list(step_events)
            self._batches(info, events)
            if result != A.RESULT_SUCCESS:
                seen = {e.step_key for e in events}
                for key in info.step_keys:
                    if key not in seen and "[?]" not in key:
                        self.step_skipped(info, key, end, "upstream_failed")
        run_span(N.SYSTEM, info.job, info.run_id, start=start, end=end, result=result,
                 attributes=info.run_attributes(), upstream=info.upstream, error=error_type)
        # No flush here: it would cost every in-process run a wait on the exporter; a process that
        # ends with the run (CLI, run worker) flushes at exit.

    def _batches(self, info: RunInfo, events: list[StepEvent]) -> None:
        groups: dict[str, dict[str, Any]] = {}
        for ev in events:
            base, mapping = split_step_key(ev.step_key)
            if mapping is None:
                continue
            g = groups.setdefault(base, {"keys": set(), "start": None, "end": None, "failed": set()})
            g["keys"].add(ev.step_key)
            if ev.kind == "start":
                g["start"] = ev.ts if g["start"] is None else min(g["start"], ev.ts)
            g["end"] = ev.ts if g["end"] is None else max(g["end"], ev.ts)
            if ev.kind == "end":
                (g["failed"].add if ev.failed else g["failed"].discard)(ev.step_key)
        ident = info.ident
        for base, g in groups.items():
            start = g["start"] if g["start"] is not None else g["end"]
            attrs = {A.SYSTEM: N.SYSTEM, A.PIPELINE_NAME: info.job, A.PIPELINE_RUN_ID: info.run_id,
                     A.BATCH_SIZE: len(g["keys"]), N.JOB: info.job, N.RUN_ID: info.run_id, N.OP: op_name(base),
                     A.TASK_NAME: base}
            record_span(ident, ident.batch_span_id(base), A.batch_span_name(base), start=start, end=g["end"],
                        parent_span_id=ident.run_span_id, attributes=attrs, synthetic=False,
                        result=A.RESULT_FAILURE if g["failed"] else A.RESULT_SUCCESS)

    def clear(self) -> None:
        with self._lock:
            entries = list(self._open.values())
            self._open.clear()
        for entry in entries:
            try:
                end_task_span(entry.span, result=A.RESULT_ERROR)
            except Exception as exc:  # pragma: no cover - defensive
                warn_once_per(log, "dagster-clear", "pipetrace: %r", exc)
