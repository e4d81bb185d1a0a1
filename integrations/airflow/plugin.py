"""The Airflow plugin (entry point ``airflow.plugins``: installing pipetrace[airflow] is enough), its
listener (the one place that receives Airflow events) and the task-process side.

Airflow loads the plugin in every component (``AIRFLOW__PIPETRACE__ENABLED=false`` or ``PIPETRACE_ENABLED=0``
empties it); the listener registers on the task SDK's listener manager (task process) and core's
(scheduler, ``dag.test()``: see :mod:`.runs`); every hook is guarded. In the task process each attempt
gets one live span, current while the operator runs (user spans nest under it; log records carry its
ids), from right before ``execute`` (templates rendered) to the success/failed/skipped hook.
"""

from __future__ import annotations

try:  # the task SDK's class in workers; core re-exports the same shared class
    from airflow.sdk.plugins_manager import AirflowPlugin
except ImportError:  # pragma: no cover - older layouts
    from airflow.plugins_manager import AirflowPlugin  # type: ignore[assignment]

import functools
import logging
import sys
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span
from pipetrace import attributes as A
from pipetrace import set_component
from pipetrace.adapter import Attempts, guarded, record_error_summary, status_description
from pipetrace.adapter.logs import bind_span_ids, unbind_span_ids
from pipetrace.carriers import inject
from pipetrace.spans import end_task_span, start_task_span
from pluggy import HookimplMarker

from . import runs, xcom
from .runs import CONF_KEYS, SYSTEM, run_ref
from .settings import active, enabled, install_filter, native_tracing, xcom_links

log = logging.getLogger("pipetrace.airflow")
hookimpl = HookimplMarker("airflow")  # the marker both Airflow listener managers use
_guarded = guarded(log, enabled=active)

COMPONENTS = {"scheduler": "airflow-scheduler", "dag-processor": "airflow-dag-processor",
              "triggerer": "airflow-triggerer", "api-server": "airflow-api-server", "worker": "airflow-worker"}


def component_of(argv: list[str]) -> str | None:
    """The component (``service.name``) this command line starts: ``airflow scheduler`` → ``airflow-scheduler``
    (the task process names itself when its task starts)."""
    if not argv or not argv[0].endswith("airflow"):
        return None
    return next((COMPONENTS[a] for a in argv[1:3] if a in COMPONENTS), None)


@functools.cache  # per class: a C-level lookup on each hook, no Python call
def _in_task_process(cls: type) -> bool:
    """``ti.__class__``: the task SDK's ``RuntimeTaskInstance`` (live spans), not core's ORM ``TaskInstance``."""
    return cls.__module__.startswith("airflow.sdk")


TaskKey = tuple[str, str, str, int, int]
_attempts: Attempts[TaskKey] = Attempts()  # of this task process (one at a time); data: log-binding tokens


def _key(ti: Any) -> TaskKey:
    return ti.dag_id, ti.run_id, ti.task_id, -1 if ti.map_index is None else int(ti.map_index), int(ti.try_number or 0)


@functools.cache  # per operator class
def _is_trigger(cls: Any) -> bool:
    return "TriggerDagRunOperator" in [c.__name__ for c in cls.__mro__]


@guarded(log, "airflow-trigger", "could not propagate context to triggered run")
def _propagate_to_triggered_run(task: Any, span: Span) -> None:
    """``TriggerDagRunOperator``: the triggered run's conf carries this span, so DAG-of-DAGs is one trace
    (added only to a dict conf without a context of its own, as OpenLineage injects its parent run)."""
    conf = getattr(task, "conf", None)
    if (conf is not None and not isinstance(conf, dict)) or (conf and any(k in conf for k in CONF_KEYS)):
        return
    carrier = inject({}, trace.set_span_in_context(span))
    extra = {k: v for k, v in carrier.items() if k in ("traceparent", "tracestate")}
    if extra:
        task.conf = {**(conf or {}), **extra}


def task_started(ti: Any) -> None:
    """Open the attempt's span (its attributes given clean, in one go) and make it current."""
    dag_id, run_id, task_id, map_index, try_number = key = _key(ti)
    if _attempts.get(key) is not None:  # a previous attempt in this process never finished
        _close(key, A.RESULT_ERROR)
    # the run's conf as get_template_context() reads it, without validating the DAG's params once more
    conf = getattr(getattr(getattr(ti, "_ti_context_from_server", None), "dag_run", None), "conf", None)
    ref = run_ref(dag_id, run_id, conf, native_carrier=getattr(ti, "context_carrier", None))
    parent = None
    if (ref.native or native_tracing()) and trace.get_current_span().get_span_context().is_valid:
        parent = otel_context.get_current()  # Airflow's worker.* span
    links = xcom.reads.begin(xcom.targets(ti, ref.ident)) if xcom_links() else []
    task = getattr(ti, "task", None)
    attrs = {"airflow.dag_id": dag_id, "airflow.task_id": task_id, "airflow.dag_run.run_id": run_id}
    if type(host := getattr(ti, "hostname", None)) is str:
        attrs["airflow.task_instance.hostname"] = host
    if task is not None:
        attrs["airflow.operator"] = type(task).__name__
        if type(queue := getattr(task, "queue", None)) is str:
            attrs["airflow.task_instance.queue"] = queue
    span = start_task_span(
        SYSTEM, dag_id, run_id, task_id, try_number=try_number, map_index=map_index if map_index >= 0 else None,
        attributes=attrs, links=links, ident=ref.ident, batch=task_id if map_index >= 0 else None, parent=parent,
        start_time=getattr(ti, "start_date", None), clean_attributes=True, base=ref.base,
    )
    _attempts.start(key, span, data=bind_span_ids(span))
    if task is not None and _is_trigger(type(task)):  # type: ignore[arg-type]  # a class is hashable
        _propagate_to_triggered_run(task, span)
    if xcom_links():
        xcom.reads.attach(span)
        xcom.publish(ti, span)


def _close(key: TaskKey, result: str, error: BaseException | str | None = None, ti: Any = None) -> None:
    """End the attempt's span with its result (success, failure, retry, skip; error: a stale attempt)."""
    attempt = _attempts.pop(key)
    if ti is not None:
        xcom.reads.finish()
    if attempt is None:
        return
    span = attempt.span
    if getattr(ti, "state", None) is not None:
        span.set_attribute("airflow.task_instance.state", runs.state_name(ti.state))
    # End where Airflow's record ends, so scheduler-side spans built from the same record (the batch span of
    # a mapped task) cover it exactly.
    end, start = getattr(ti, "end_date", None), getattr(ti, "start_date", None)
    end = None if end is not None and start is not None and end < start else end
    if error and not isinstance(error, BaseException):
        record_error_summary(span, "airflow.TaskFailure", status_description(error, 4096), status=False)
    end_task_span(span, error=error if isinstance(error, BaseException) else None, result=result, end_time=end)
    unbind_span_ids(attempt.data)


class AirflowListener:
    """Listener object (pluggy plugin); method names are Airflow's hook names."""

    @hookimpl
    @_guarded
    def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:
        if _in_task_process(task_instance.__class__):
            set_component("airflow-task")
            task_started(task_instance)

    @hookimpl
    @_guarded
    def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
        if _in_task_process(task_instance.__class__):
            _close(_key(task_instance), A.RESULT_SUCCESS, ti=task_instance)

    @hookimpl
    @_guarded
    def on_task_instance_skipped(self, previous_state: Any, task_instance: Any) -> None:
        if _in_task_process(task_instance.__class__):
            _close(_key(task_instance), A.RESULT_SKIP, ti=task_instance)

    @hookimpl
    @_guarded
    def on_task_instance_failed(self, previous_state: Any, task_instance: Any, error: Any) -> None:
        retry = runs.state_name(getattr(task_instance, "state", None)) == "up_for_retry"
        if _in_task_process(task_instance.__class__):
            _close(_key(task_instance), A.RESULT_RETRY if retry else A.RESULT_FAILURE, error, task_instance)
        else:
            runs.task_failed_outside_worker(task_instance, error)

    @hookimpl
    @_guarded
    def on_dag_run_success(self, dag_run: Any, msg: str) -> None:
        runs.run_finished(dag_run, A.RESULT_SUCCESS)

    @hookimpl
    @_guarded
    def on_dag_run_failed(self, dag_run: Any, msg: str) -> None:
        runs.run_finished(dag_run, A.RESULT_FAILURE)


listener = AirflowListener()


def _listeners() -> list[object]:
    try:
        if not enabled():
            return []
        install_filter()
        xcom.install()
        if name := component_of(sys.argv):
            set_component(name)
        return [listener]
    except Exception:  # never break Airflow's plugin loading
        return []


class PipetracePlugin(AirflowPlugin):
    name = "pipetrace"
    listeners = _listeners()
