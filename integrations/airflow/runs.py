"""A DAG run as a pipetrace run: which trace it belongs to, and what only its end can tell.

Its trace is decided here, so task process and scheduler agree: Airflow's native ``context_carrier`` with
``[traces] otel_on`` (joined; no second run span), else the caller's context in ``dag_run.conf``, else the
id derived from ``(dag_id, run_id)``. When it ends (scheduler, ``dag.test()``): the run span from the
DagRun record, a ``batch {task}`` span per mapped task, a zero-length span per instance that never ran and
an error span per failed attempt whose process died first. Derived ids: a live span of an attempt wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from datetime import datetime, timezone
from typing import Any, NamedTuple

from opentelemetry.context import Context
from pipetrace import attributes as A
from pipetrace.adapter import attempt_attributes, run_attributes, status_description, stored_span_ids, upstream_carrier
from pipetrace.adapter.batches import Finished, record_finished
from pipetrace.identity import RunIdentity
from pipetrace.spans import identity, record_span, run_span

from .settings import native_tracing

SYSTEM = "airflow"
CONF_KEYS = ("traceparent", "airflow/dagrun_parent_trace_context")
"""``conf`` keys of the caller's context: W3C (plus ``tracestate``), or Airflow's own (carrier or string)."""

NEVER_RAN = {"skipped": A.RESULT_SKIP, "upstream_failed": A.RESULT_CANCELLATION,
             "removed": A.RESULT_CANCELLATION, "none": A.RESULT_CANCELLATION}
"""Task states of instances that never started, and the result their placeholder span gets."""
_refs: dict[tuple[str, str, str, str], Any] = {}  # run_ref's answers (a process sees few runs at a time)


def upstream_from_conf(conf: object) -> object:
    """The caller's context carried in a run's conf (ours, else Airflow's native one), or None; garbage
    is left for the core to reject."""
    carrier = upstream_carrier(conf)
    if carrier is None and isinstance(conf, Mapping):
        return conf.get("airflow/dagrun_parent_trace_context")
    return carrier


class RunRef(NamedTuple):
    """Who the run is, and whether its trace is Airflow's native one."""

    ident: RunIdentity
    native: bool
    base: dict[str, Any]  # what every attempt span of the run starts with (start_task_span's ``base``)

    @property
    def children_parent(self) -> Context:
        """Parent of batch and never-ran spans: Airflow's ``dag_run.*`` span, or our run span."""
        return (self.native and self.ident.upstream_context()) or self.ident.run_context()


def run_ref(dag_id: str, run_id: str, conf: object = None, native_carrier: object = None) -> RunRef:
    """The run's identity from what Airflow stores about it (precedence: see the module doc); kept by what
    decides it (every task of a run in one process, ``dag.test()`` or a scheduler, asks again)."""
    native = isinstance(native_carrier, Mapping) and native_carrier.get("traceparent") and native_tracing()
    upstream = upstream_from_conf(conf)
    key = (dag_id, run_id, repr(native_carrier) if native else "", repr(upstream))
    if (ref := _refs.get(key)) is None:
        ident = identity(SYSTEM, dag_id, run_id, upstream=dict(native_carrier)) if native else None  # type: ignore
        if ident is None or ident.upstream is None:  # no native context, or a malformed one
            ident, native = identity(SYSTEM, dag_id, run_id, upstream=upstream), False
        if len(_refs) >= 256:
            _refs.clear()
        ref = _refs[key] = RunRef(ident, bool(native), run_attributes(SYSTEM, dag_id, run_id))
    return ref


def state_name(value: object) -> str:
    return "none" if value is None else str(getattr(value, "value", value))


def _map_index(ti: Any) -> int | None:
    return ti.map_index if ti.map_index is not None and ti.map_index >= 0 else None


def _attempt_id(ref: RunRef, ti: Any) -> int:
    return ref.ident.task_span_id(ti.task_id, _map_index(ti), int(ti.try_number or 0))


def _batches(ref: RunRef, tis: list[Any], end: datetime) -> None:
    record_finished(ref.ident, (Finished(ti.task_id, ti.start_date, ti.end_date,
                                         state_name(ti.state) in ("failed", "upstream_failed"))
                                for ti in tis if _map_index(ti) is not None),
                    run_end=end, parent=ref.children_parent, extra=lambda task_id: {"airflow.task_id": task_id})


def _attempt_span(ref: RunRef, ti: Any, result: str | None = None, when: Any = None, failure: object = None) -> None:
    """A span recorded for an attempt from its record: one that never ran (zero length at ``when``), or
    one whose task process may never have reported its own (``failure``: SIGKILL, OOM, lost heartbeat).
    Synthetic: the store keeps the worker's live span for the same attempt if there is one."""
    map_index, ident, state = _map_index(ti), ref.ident, state_name(ti.state)
    attrs = attempt_attributes(SYSTEM, ti.dag_id, ti.run_id, ti.task_id, int(ti.try_number or 0), map_index=map_index)
    attrs.update({"airflow.dag_id": ti.dag_id, "airflow.task_id": ti.task_id,
                  "airflow.dag_run.run_id": ti.run_id, "airflow.task_instance.state": state})
    end = when or ti.end_date or datetime.now(timezone.utc)
    if failure is not None:
        attrs.update({"airflow.failure.source": "scheduler", "airflow.failure.message": status_description(failure)})
        result = A.RESULT_RETRY if state == "up_for_retry" else A.RESULT_FAILURE
    parent = ident.context_for(ident.batch_span_id(ti.task_id)) if map_index is not None and not ref.native \
        else ref.children_parent
    record_span(ident, _attempt_id(ref, ti), A.task_span_name(ti.task_id), start=when or ti.start_date or end,
                end=end, parent=parent, attributes=attrs, result=result,
                error="airflow.TaskFailedOutsideWorker" if failure is not None else None)


def task_instances(dag_run: Any) -> list[Any]:
    """The run's task instances as rows of the columns read here, as ``get_task_instances`` selects them
    (partial DAG included), but without building an ORM object per row (most of that call's cost)."""
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from sqlalchemy import select
    from sqlalchemy.orm import object_session

    query = select(TI.dag_id, TI.run_id, TI.task_id, TI.map_index, TI.try_number, TI.state, TI.start_date, TI.end_date
                   ).where(TI.dag_id == dag_run.dag_id, TI.run_id == dag_run.run_id).order_by(TI.task_id, TI.map_index)
    dag = getattr(dag_run, "dag", None)
    if dag is not None and getattr(dag, "partial", False):
        query = query.where(TI.task_id.in_(dag.task_ids))
    session = object_session(dag_run)  # read in the caller's session: the scheduler holds it open
    with nullcontext(session) if session is not None else create_session() as s:
        return list(s.execute(query).all())


def run_finished(dag_run: Any, result: str) -> None:
    """Emit the run span, batch spans and never-ran task spans of a finished DAG run."""
    ref = run_ref(dag_run.dag_id, dag_run.run_id, dag_run.conf, getattr(dag_run, "context_carrier", None))
    end = dag_run.end_date or datetime.now(timezone.utc)
    tis = task_instances(dag_run)
    _batches(ref, tis, end)
    # Failed attempts whose span the local store already holds (their task process, or the scheduler's
    # heartbeat-timeout handling, reported it) get no second one; without a local store, every one does.
    failed = [_attempt_id(ref, ti) for ti in tis if state_name(ti.state) == "failed"]
    reported = stored_span_ids(ref.ident.trace_id, failed)
    for ti in tis:
        state = state_name(ti.state)
        if state in NEVER_RAN:  # a live span (task skipped itself) wins over this placeholder
            _attempt_span(ref, ti, NEVER_RAN[state], when=ti.end_date or end)
        elif state == "failed" and f"{_attempt_id(ref, ti):016x}" not in reported:
            _attempt_span(ref, ti, failure="task failed without ending its span (task process killed?)")
    if not ref.native:
        attrs = {"airflow.dag_id": dag_run.dag_id, "airflow.dag_run.run_id": dag_run.run_id,
                 "airflow.dag_run.run_type": state_name(getattr(dag_run, "run_type", None)),
                 "airflow.dag_run.state": state_name(getattr(dag_run, "state", None)),
                 "airflow.dag_run.task_count": len(tis)}
        run_span(SYSTEM, dag_run.dag_id, dag_run.run_id, start=dag_run.start_date or dag_run.queued_at or end,
                 end=end, result=result, attributes=attrs, upstream=ref.ident.upstream)


def task_failed_outside_worker(ti: Any, error: object) -> None:
    """The scheduler failed an attempt (worker killed, heartbeat lost): an error span for it, which a
    live span from the worker, if one was ever reported, replaces."""
    dag_run = getattr(ti, "dag_run", None)
    ref = run_ref(ti.dag_id, ti.run_id, getattr(dag_run, "conf", None), getattr(dag_run, "context_carrier", None))
    _attempt_span(ref, ti, failure=error or "task failed outside its worker")
