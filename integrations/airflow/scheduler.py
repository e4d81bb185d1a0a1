"""Scheduler side (and the ``dag.test()`` process): what only the end of a run can tell.

When a DAG run ends: the run span from the DagRun record (unless Airflow's native tracing already emits
``dag_run.*``), one ``batch {task}`` span per mapped task covering its instances, and a zero-length span
for every task instance that never ran, and an error span for every failed final attempt (kept only when
the task process died before ending its own). When the scheduler fails a task whose worker died, an error
span for that attempt. All of these use derived ids: a live span reported for the same attempt wins.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

import pipetrace
from pipetrace import attributes as A
from pipetrace import record_span, run_span
from pipetrace.redaction.text import status_description
from pipetrace.spans import task_attributes
from pipetrace.store import SpanStore
from pipetrace.store.queries import spans_by_ids
from pipetrace.util.ratelimit import warn_once_per

from .runs import SYSTEM, RunRef, run_ref

log = logging.getLogger("pipetrace.airflow")

NEVER_RAN = {
    "skipped": A.RESULT_SKIP,
    "upstream_failed": A.RESULT_CANCELLATION,
    "removed": A.RESULT_CANCELLATION,
    "none": A.RESULT_CANCELLATION,
}
"""Task states of instances that never started, and the result their placeholder span gets."""


def _state(value: object) -> str:
    if value is None:
        return "none"
    return str(getattr(value, "value", value))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _task_instances(dag_run: Any) -> list[Any]:
    """The run's task instances, read in the caller's session (the scheduler holds it open)."""
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    if session is not None:
        return list(dag_run.get_task_instances(session=session))
    return list(dag_run.get_task_instances())


def _dag_run_attributes(dag_run: Any) -> dict[str, Any]:
    return {
        "airflow.dag_id": dag_run.dag_id,
        "airflow.dag_run.run_id": dag_run.run_id,
        "airflow.dag_run.run_type": _state(getattr(dag_run, "run_type", None)),
        "airflow.dag_run.state": _state(getattr(dag_run, "state", None)),
    }


def _batches(ref: RunRef, dag_run: Any, tis: list[Any], end: datetime) -> None:
    mapped: dict[str, list[Any]] = defaultdict(list)
    for ti in tis:
        if ti.map_index is not None and ti.map_index >= 0:
            mapped[ti.task_id].append(ti)
    for task_id, group in mapped.items():
        starts = [ti.start_date for ti in group if ti.start_date]
        ends = [ti.end_date for ti in group if ti.end_date]
        first = min(starts) if starts else end
        last = max(ends) if ends else first
        failed = any(_state(ti.state) in ("failed", "upstream_failed") for ti in group)
        record_span(
            ref.ident, ref.ident.batch_span_id(task_id), A.batch_span_name(task_id), start=first, end=last,
            parent=ref.children_parent, synthetic=False,
            result=A.RESULT_FAILURE if failed else A.RESULT_SUCCESS,
            attributes={A.SYSTEM: SYSTEM, A.PIPELINE_NAME: dag_run.dag_id, A.PIPELINE_RUN_ID: dag_run.run_id,
                        A.TASK_NAME: task_id, A.BATCH_SIZE: len(group), "airflow.task_id": task_id},
        )


def _attempt_span(ref: RunRef, ti: Any, *, start: Any, end: Any, result: str,
                  error: str | None = None, extra: dict[str, Any] | None = None) -> None:
    mapped = ti.map_index is not None and ti.map_index >= 0
    map_index = ti.map_index if mapped else None
    try_number = int(ti.try_number or 0)
    ident = ref.ident
    attrs = task_attributes(SYSTEM, ti.dag_id, ti.run_id, ti.task_id, try_number, map_index)
    attrs.update({"airflow.dag_id": ti.dag_id, "airflow.task_id": ti.task_id,
                  "airflow.dag_run.run_id": ti.run_id, "airflow.task_instance.state": _state(ti.state)})
    attrs.update(extra or {})
    parent = ident.context_for(ident.batch_span_id(ti.task_id)) if mapped and not ref.native \
        else ref.children_parent
    record_span(ident, ident.task_span_id(ti.task_id, map_index, try_number), A.task_span_name(ti.task_id),
                start=start, end=end, parent=parent, attributes=attrs, result=result, error=error)


def _attempt_id(ref: RunRef, ti: Any) -> str:
    map_index = ti.map_index if ti.map_index is not None and ti.map_index >= 0 else None
    return f"{ref.ident.task_span_id(ti.task_id, map_index, int(ti.try_number or 0)):016x}"


def _already_stored(ref: RunRef, failed: list[Any]) -> set[str]:
    """Span ids of these attempts that the local store already holds (their task process, or the
    scheduler's heartbeat-timeout handling, reported them), so a run-end error span is not sent twice to
    the exporters. Without a local store nothing is known and every failed attempt gets one."""
    if not failed:
        return set()
    try:
        settings = pipetrace.settings()
        if "store" not in settings.exporters:
            return set()
        pipetrace.force_flush(2, exporters=("store",))  # this process's own spans (heartbeat timeouts)
        trace_id = f"{ref.ident.trace_id:032x}"
        found = spans_by_ids(SpanStore(settings.store_path), [(trace_id, _attempt_id(ref, ti)) for ti in failed])
        return {span.span_id for span in found}
    except Exception as exc:
        warn_once_per(log, "airflow-stored", "pipetrace: could not check stored attempts: %r", exc)
        return set()


def run_finished(dag_run: Any, result: str) -> None:
    """Emit the run span, batch spans and never-ran task spans of a finished DAG run."""
    ref = run_ref(dag_run.dag_id, dag_run.run_id, getattr(dag_run, "conf", None),
                  native_carrier=getattr(dag_run, "context_carrier", None))
    end = dag_run.end_date or _now()
    start = dag_run.start_date or dag_run.queued_at or end
    tis = _task_instances(dag_run)
    _batches(ref, dag_run, tis, end)
    reported = _already_stored(ref, [ti for ti in tis if _state(ti.state) == "failed"])
    for ti in tis:
        state = _state(ti.state)
        if state in NEVER_RAN:  # a live span (task skipped itself) wins over this placeholder
            when = ti.end_date or end
            _attempt_span(ref, ti, start=when, end=when, result=NEVER_RAN[state])
        elif state == "failed" and _attempt_id(ref, ti) not in reported:
            # no span for this attempt yet: its task process died before ending it
            _failed_attempt_span(ref, ti, "task failed without ending its span (task process killed?)")
    if not ref.native:
        attrs = _dag_run_attributes(dag_run)
        attrs["airflow.dag_run.task_count"] = len(tis)
        run_span(SYSTEM, dag_run.dag_id, dag_run.run_id, start=start, end=end, result=result,
                 attributes=attrs, upstream=ref.upstream)


def task_failed_outside_worker(ti: Any, error: object) -> None:
    """The scheduler failed an attempt (worker killed, heartbeat lost): an error span for it, which a
    live span from the worker, if one was ever reported, replaces."""
    dag_run = getattr(ti, "dag_run", None)
    ref = run_ref(ti.dag_id, ti.run_id, getattr(dag_run, "conf", None),
                  native_carrier=getattr(dag_run, "context_carrier", None))
    _failed_attempt_span(ref, ti, error or "task failed outside its worker")


def _failed_attempt_span(ref: RunRef, ti: Any, error: object) -> None:
    """Error span for an attempt whose task process may never have reported one (SIGKILL, OOM, lost
    heartbeat). Synthetic: the store keeps the worker's live span for the same attempt if there is one."""
    end = ti.end_date or _now()
    result = A.RESULT_RETRY if _state(ti.state) == "up_for_retry" else A.RESULT_FAILURE
    _attempt_span(ref, ti, start=ti.start_date or end, end=end, result=result,
                  error="airflow.TaskFailedOutsideWorker",
                  extra={"airflow.failure.source": "scheduler",
                         "airflow.failure.message": status_description(error)})
