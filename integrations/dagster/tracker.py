"""Dagster runs and steps as pipetrace spans: the one place that speaks pipetrace's model.

Takes plain values from :mod:`.events` and keeps the live step spans of this process, each current from its
step's start to its end in the thread that runs the step, so user spans inside the op nest under it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from pipetrace import attributes as A
from pipetrace.adapter import (
    Attempts,
    add_link,
    attempt_attributes,
    end_task_span,
    force_flush,
    record_error_summary,
    record_span,
    run_span,
    start_task_span,
)
from pipetrace.adapter.batches import Finished, record_finished

from . import runinfo as N
from .runinfo import RunInfo, op_name, split_step_key


class ErrorSummary(NamedTuple):
    """What Dagster tells about a failure (its SerializableErrorInfo, flattened)."""

    type: str
    message: str
    stacktrace: str = ""


class StepEvent(NamedTuple):
    """One stored step event, for what the run end reconstructs (batches, steps that never ran)."""

    step_key: str
    kind: str  # start | end | retry | skip
    ts: float
    failed: bool = False


def _mapped_copies(events: list[StepEvent]) -> Iterator[Finished]:
    """Each mapped copy of a dynamic step: from its first start to its last event, failed if its last end
    failed."""
    by_key: dict[str, list[StepEvent]] = {}
    for ev in events:
        if split_step_key(ev.step_key)[1] is not None:
            by_key.setdefault(ev.step_key, []).append(ev)
    for key, evs in by_key.items():
        ended = [ev.failed for ev in evs if ev.kind == "end"]
        yield Finished(split_step_key(key)[0], min((ev.ts for ev in evs if ev.kind == "start"), default=None),
                       max(ev.ts for ev in evs), bool(ended) and ended[-1])


class StepTracker:
    """The live step spans of this process, keyed by (run id, step key)."""

    def __init__(self) -> None:
        self._open: Attempts[tuple[str, str]] = Attempts()

    def step_started(self, info: RunInfo, step_key: str, try_number: int, ts: float) -> None:
        step, ident = info.step(step_key), info.ident
        span_id = ident.task_span_id(step_key, None, try_number)
        parent = ident.context_for(ident.batch_span_id(step.base)) if step.mapping is not None else ident.run_context()
        # the run's attributes kept per run, the step's per plan: core copies them once, checks nothing again
        span = start_task_span(N.SYSTEM, info.job, info.run_id, step_key, try_number=try_number, ident=ident,
                               parent=parent, base=info.task_base, name=step.name, clean_attributes=True,
                               attributes={**step.attributes, **info.tail} if info.tail else step.attributes,
                               start_time=int(ts * 1e9), span_id=span_id)
        info.attempts[step_key], info.span_ids[step_key] = try_number, span_id
        self._open.start((info.run_id, step_key), span, try_number=try_number)  # a stale start is closed

    def input_loaded(self, info: RunInfo, step_key: str, upstream_key: str, output: str | None,
                     input_name: str, upstream_try: int) -> None:
        """A link from the step to the attempt whose output (or asset) it loaded (that span has the step key)."""
        span = self._open.current((info.run_id, step_key))
        if span is None or not span.is_recording():
            return
        asset = info.asset_of_output(upstream_key, output) if info.plan.asset_outputs else None
        attrs: dict[str, Any] = {A.LINK_KIND: "asset" if asset else "result", N.INPUT: input_name}
        if output:
            attrs[N.OUTPUT] = output
        if asset:
            attrs[N.ASSET_KEY] = asset
        known = info.span_ids.get(upstream_key) if info.attempts.get(upstream_key) == upstream_try else None
        add_link(span, info.ident.span_context(known or info.ident.task_span_id(upstream_key, None, upstream_try)),
                 attrs)

    def asset_materialized(self, info: RunInfo, step_key: str, asset_key: str, partition: str | None) -> None:
        span = self._open.current((info.run_id, step_key))
        if span is None or not span.is_recording():
            return
        existing = (getattr(span, "attributes", None) or {}).get(N.ASSET_KEY)
        keys = sorted({asset_key, *([existing] if isinstance(existing, str) else existing or ())})
        span.set_attribute(N.ASSET_KEY, keys[0] if len(keys) == 1 else keys)
        if partition:
            span.set_attribute(N.PARTITION_KEY, partition)

    def step_finished(self, info: RunInfo, step_key: str, ts: float, result: str,
                      error: ErrorSummary | None = None) -> None:
        entry = self._open.pop((info.run_id, step_key))
        if entry is None:
            # Ended where it never started (the orchestrator reporting a dead step process): an
            # after-the-fact span with the same derived id; a live span from the step wins over it.
            self._record_after(info, step_key, ts, info.attempts.get(step_key, 1), result,
                               error=f"{error.type}: {error.message}" if error else None)
            return
        if error is not None and entry.span.is_recording():
            record_error_summary(entry.span, error.type, error.message, result=result, stacktrace=error.stacktrace)
            end_task_span(entry.span, end_time=ts)
        elif result == A.RESULT_SUCCESS:  # end_task_span's common case, without its checks
            entry.span.set_attribute(A.TASK_RESULT, result)
            entry.span.end(end_time=int(ts * 1e9))
        else:
            end_task_span(entry.span, result=result, end_time=ts)
        if not info.saw_run_start:  # a step subprocess: it exits right after the step, the span goes out now
            force_flush(5)

    def step_skipped(self, info: RunInfo, step_key: str, ts: float, reason: str) -> None:
        self._record_after(info, step_key, ts, 1, A.RESULT_SKIP, extra={N.SKIP_REASON: reason})

    def _record_after(self, info: RunInfo, step_key: str, ts: float, try_number: int, result: str,
                      error: str | None = None, extra: dict[str, Any] | None = None) -> None:
        """A step attempt's span recorded after the fact, with the id its live span would have."""
        step, ident = info.step(step_key), info.ident
        attrs = {**step.attributes, **info.tail,
                 **attempt_attributes(N.SYSTEM, info.job, info.run_id, step.base, try_number), **(extra or {})}
        parent = ident.batch_span_id(step.base) if step.mapping is not None else ident.run_span_id
        record_span(ident, ident.task_span_id(step_key, None, try_number), A.task_span_name(step.base), start=ts,
                    end=ts, parent_span_id=parent, attributes=attrs, result=result, error=error)

    def run_ended(self, info: RunInfo, start: float, end: float, result: str, error_type: str | None,
                  step_events: list[StepEvent] | None) -> None:
        """Batch spans of dynamic steps, steps that never ran, then the run span (once, here)."""
        if step_events is not None:  # one batch span per dynamic step, from its mapped copies
            record_finished(info.ident, _mapped_copies(step_events), parent_span_id=info.ident.run_span_id,
                            extra=lambda base: {N.JOB: info.job, N.RUN_ID: info.run_id, N.OP: op_name(base)})
            if result != A.RESULT_SUCCESS:
                seen = {e.step_key for e in step_events}
                for key in info.plan.step_keys:
                    if key not in seen and "[?]" not in key:
                        self.step_skipped(info, key, end, "upstream_failed")
        run_span(N.SYSTEM, info.job, info.run_id, start=start, end=end, result=result,
                 attributes=info.run_attributes(), upstream=info.upstream, error=error_type)
        # No flush: every in-process run would wait on the exporter; a process ending with the run flushes at exit.

    def clear(self) -> None:
        self._open.close_all()
