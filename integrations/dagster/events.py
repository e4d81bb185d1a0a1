"""The one place that reads Dagster events: each ``EventLogEntry`` handed to the instance becomes a
call on :class:`.tracker.StepTracker` with plain values.

Every Dagster process (the in-process executor, the multiprocess orchestrator, each step subprocess,
``dagster dev``'s run workers) hands every event it emits to ``DagsterInstance.handle_new_event`` in
the thread that runs the step, so this sees STEP_START before the op body and STEP_SUCCESS after it.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from pipetrace import attributes as A
from pipetrace import set_component
from pipetrace.adapter import OpenAttempts, warn_once_per

from .runinfo import MAX_RUNS, RunInfo, load
from .tracker import ErrorSummary, StepEvent, StepTracker

log = logging.getLogger("pipetrace.dagster")

_ATTEMPT = re.compile(r"attempt # (\d+)")
# Dagster's ``event_type_value``s this adapter reads (runs still say PIPELINE_* there).
RUN_RESULTS = {"PIPELINE_SUCCESS": A.RESULT_SUCCESS, "PIPELINE_FAILURE": A.RESULT_FAILURE,
               "PIPELINE_CANCELED": A.RESULT_CANCELLATION}
HANDLED = frozenset({"STEP_START", "STEP_RESTARTED", "STEP_SUCCESS", "STEP_FAILURE", "STEP_UP_FOR_RETRY",
                     "STEP_SKIPPED", "LOADED_INPUT", "ASSET_MATERIALIZATION", "PIPELINE_START", *RUN_RESULTS})
_WRAPPERS = frozenset({"RetryRequestedFromPolicy", "RetryRequested"})  # and Dagster*: the user's error is the cause


def error_summary(error: Any) -> ErrorSummary | None:
    """Flatten a SerializableErrorInfo; a user error wrapped by Dagster reports the user's class."""
    if error is None:
        return None
    inner = error
    while inner.cause is not None and (str(getattr(inner, "cls_name", "") or "").startswith("Dagster")
                                       or inner.cls_name in _WRAPPERS):
        inner = inner.cause
    return ErrorSummary(type=str(inner.cls_name or "Error"), message=str(inner.message or "").strip(),
                        stacktrace="".join(getattr(error, "stack", None) or []))


class EventTranslator:
    """Turns Dagster events into tracker calls; keeps what this process learnt per run."""

    def __init__(self) -> None:
        # run id → RunInfo, forgotten at the run's end (at most MAX_RUNS: the first seen is dropped first)
        self.runs: OpenAttempts[str, RunInfo] = OpenAttempts(MAX_RUNS)
        self.steps = StepTracker()

    def observe(self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> None:
        """The wrapper of ``DagsterInstance.handle_new_event``: Dagster first, then this (a failure here is
        swallowed and logged once a minute). Most events are not read: they cost one check here."""
        wrapped(*args, **kwargs)
        try:
            entry = args[0] if args else kwargs["event"]
            de = entry.dagster_event
            if de is not None and de.event_type_value in HANDLED:
                self.handle(instance, entry, de, de.event_type_value)
        except Exception as exc:
            warn_once_per(log, "dagster-observer", "pipetrace: Dagster event not traced: %r", exc)

    def handle(self, instance: Any, entry: Any, de: Any, kind: str) -> None:
        """One event of a ``HANDLED`` kind (``de``: its ``dagster_event``)."""
        info = self.runs.get(entry.run_id) or load(self.runs, instance, entry.run_id, entry.job_name or de.job_name)
        key, ts = de.step_key, entry.timestamp
        if kind == "STEP_START":
            if not info.saw_run_start:  # in-process steps stay the run worker's
                set_component("dagster-step-worker", override=False)
            self.steps.step_started(info, key, 1, ts)
        elif kind == "STEP_RESTARTED":
            self.steps.step_started(info, key, self._restart_try(instance, info, key, de.message), ts)
        elif kind == "LOADED_INPUT":
            data = de.event_specific_data
            up = getattr(data, "upstream_step_key", None)
            if up:
                self.steps.input_loaded(info, key, up, data.upstream_output_name, data.input_name,
                                        self._final_try(instance, info, up))
        elif kind == "ASSET_MATERIALIZATION":
            mat = getattr(de.event_specific_data, "materialization", None)
            if mat is not None and key:
                self.steps.asset_materialized(info, key, mat.asset_key.to_user_string(), mat.partition)
        elif kind == "STEP_SUCCESS":
            self.steps.step_finished(info, key, ts, A.RESULT_SUCCESS)
        elif kind == "STEP_FAILURE":
            err = error_summary(getattr(de.event_specific_data, "error", None))
            self.steps.step_finished(info, key, ts, A.RESULT_FAILURE,
                                     err or ErrorSummary("StepFailure", de.message or ""))
        elif kind == "STEP_UP_FOR_RETRY":
            self.steps.step_finished(info, key, ts, A.RESULT_RETRY,
                                     error_summary(getattr(de.event_specific_data, "error", None)))
        elif kind == "STEP_SKIPPED":
            self.steps.step_skipped(info, key, ts, "outputs_not_yielded")
        elif kind == "PIPELINE_START":
            set_component("dagster-run-worker")
            info.saw_run_start = True
            info.start_ts = ts
        else:
            self._run_ended(instance, info, entry, kind)

    def _restart_try(self, instance: Any, info: RunInfo, key: str, message: str | None) -> int:
        match = _ATTEMPT.search(message or "")
        if match:
            return int(match.group(1))
        return self._final_try(instance, info, key) + (key in info.attempts)  # seen here: the next try

    def _final_try(self, instance: Any, info: RunInfo, key: str) -> int:
        """Try number of the last attempt of a step: seen in this process, else counted from the log."""
        if key in info.attempts:
            return info.attempts[key]
        if info.stored_retries is None:
            retries = self._step_events(instance, info.run_id, retries_only=True) or ()
            info.stored_retries = Counter(ev.step_key for ev in retries)
        return info.stored_retries.get(key, 0) + 1

    def _run_ended(self, instance: Any, info: RunInfo, entry: Any, kind: str) -> None:
        result = RUN_RESULTS[kind]
        start = info.start_ts
        if start is None:  # the run started in another process: its record knows when
            with contextlib.suppress(Exception):
                start = instance.get_run_record_by_id(info.run_id).start_time
        error_type = None
        if kind == "PIPELINE_FAILURE":
            data = entry.dagster_event.event_specific_data
            reason = getattr(getattr(data, "failure_reason", None), "value", None)
            err = error_summary(getattr(data, "error", None))
            error_type = reason or (err.type if err else "RunFailure")
        read = info.plan.dynamic or result != A.RESULT_SUCCESS  # batch spans to make, or steps that never ran
        step_events = self._step_events(instance, info.run_id) if read else None
        self.steps.run_ended(info, start if start is not None else entry.timestamp, entry.timestamp, result,
                             error_type, step_events)
        self.runs.pop(info.run_id)

    def _step_events(self, instance: Any, run_id: str, retries_only: bool = False) -> list[StepEvent] | None:
        """The run's stored step events (one query), or None if the event log could not be read."""
        from dagster import DagsterEventType as T

        kinds = {T.STEP_UP_FOR_RETRY: "retry"} if retries_only else {
            T.STEP_START: "start", T.STEP_RESTARTED: "start", T.STEP_SUCCESS: "end", T.STEP_FAILURE: "end",
            T.STEP_UP_FOR_RETRY: "retry", T.STEP_SKIPPED: "skip"}
        try:
            entries = instance.all_logs(run_id, of_type=set(kinds))
        except Exception as exc:
            warn_once_per(log, "dagster-steps", "pipetrace: could not read Dagster step events: %r", exc)
            return None
        return [StepEvent(e.step_key, kinds[e.dagster_event.event_type], e.timestamp,
                          failed=e.dagster_event.event_type == T.STEP_FAILURE)
                for e in entries if e.dagster_event is not None and e.step_key]

    def clear(self) -> None:
        self.steps.clear()
        self.runs.clear()
