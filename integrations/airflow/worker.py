"""Task-process side: one live span per task attempt, current while the operator runs (user spans and
instrumented libraries nest under it; log records carry its ids): started once templates are rendered,
right before ``execute``, ended by the success/failed/skipped hooks."""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span
from pipetrace import attributes as A
from pipetrace.adapter import (
    Attempts,
    end_task_span,
    guarded,
    record_error_summary,
    start_task_span,
    status_description,
)
from pipetrace.adapter.logs import bind_span_ids, unbind_span_ids
from pipetrace.carriers import inject

from . import xcom
from .runs import CONF_KEYS, SYSTEM, run_ref
from .settings import native_tracing, xcom_links

log = logging.getLogger("pipetrace.airflow")

TaskKey = tuple[str, str, str, int, int]
_attempts: Attempts[TaskKey] = Attempts()
"""The open attempts of this task process (one at a time in practice); data: the log-binding tokens."""


def _key(ti: Any) -> TaskKey:
    return ti.dag_id, ti.run_id, ti.task_id, -1 if ti.map_index is None else int(ti.map_index), int(ti.try_number or 0)


@guarded(log, "airflow-trigger", "could not propagate context to triggered run")
def _propagate_to_triggered_run(ti: Any, span: Span) -> None:
    """``TriggerDagRunOperator``: the triggered run's conf carries this span, so DAG-of-DAGs is one trace.

    Only adds ``traceparent``/``tracestate`` when the user's conf has none and is a dict (OpenLineage
    injects its parent run into the same conf the same way)."""
    task = ti.task
    if not any(cls.__name__ == "TriggerDagRunOperator" for cls in type(task).__mro__):
        return
    conf = getattr(task, "conf", None)
    if (conf is not None and not isinstance(conf, dict)) or (conf and any(k in conf for k in CONF_KEYS)):
        return
    carrier = inject({}, trace.set_span_in_context(span))
    extra = {k: v for k, v in carrier.items() if k in ("traceparent", "tracestate")}
    if extra:
        task.conf = {**(conf or {}), **extra}


def task_started(ti: Any) -> None:
    """Open the attempt's span and make it current."""
    key = _key(ti)
    _close(key, result=A.RESULT_ERROR, error=None)  # a previous attempt in this process never finished
    try:
        conf = getattr(ti.get_template_context().get("dag_run"), "conf", None)
    except Exception:
        conf = None
    ref = run_ref(ti.dag_id, ti.run_id, conf, native_carrier=getattr(ti, "context_carrier", None))
    mapped = ti.map_index is not None and ti.map_index >= 0
    parent = None
    if (ref.native or native_tracing()) and trace.get_current_span().get_span_context().is_valid:
        parent = otel_context.get_current()  # Airflow's worker.* span
    links = xcom.reads.begin(xcom.targets(ti, ref.ident)) if xcom_links() else []
    task = getattr(ti, "task", None)
    attrs = {"airflow.dag_id": ti.dag_id, "airflow.task_id": ti.task_id, "airflow.dag_run.run_id": ti.run_id,
             "airflow.task_instance.hostname": getattr(ti, "hostname", None),
             "airflow.task_instance.queue": getattr(task, "queue", None),
             "airflow.operator": type(task).__name__ if task is not None else None}
    span = start_task_span(
        SYSTEM, ti.dag_id, ti.run_id, ti.task_id, try_number=int(ti.try_number or 0),
        map_index=ti.map_index if mapped else None, attributes=attrs, links=links, upstream=ref.ident.upstream,
        batch=ti.task_id if mapped else None, parent=parent, start_time=getattr(ti, "start_date", None),
    )
    _attempts.start(key, span, data=bind_span_ids(span))
    _propagate_to_triggered_run(ti, span)
    if xcom_links():
        xcom.reads.attach(span)
        xcom.publish(ti, span)


def _close(key: TaskKey, *, result: str | None, error: BaseException | str | None, end: Any = None,
           state: Any = None) -> None:
    attempt = _attempts.pop(key)
    if attempt is None:
        return
    if state is not None:
        attempt.span.set_attribute("airflow.task_instance.state", str(getattr(state, "value", state)))
    if error and not isinstance(error, BaseException):
        record_error_summary(attempt.span, "airflow.TaskFailure", status_description(error, 4096), status=False)
    end_task_span(attempt.span, error=error if isinstance(error, BaseException) else None, result=result,
                  end_time=end)
    unbind_span_ids(attempt.data)


def task_finished(ti: Any, result: str, error: BaseException | str | None = None) -> None:
    """End the attempt's span with its result (success, failure, retry, skip)."""
    xcom.reads.finish()
    # End where Airflow's record ends, so scheduler-side spans built from the same record (the batch
    # span of a mapped task) cover it exactly.
    end, start = getattr(ti, "end_date", None), getattr(ti, "start_date", None)
    if end is not None and start is not None and end < start:
        end = None
    _close(_key(ti), result=result, error=error, end=end, state=getattr(ti, "state", None))
