"""Task-process side: one live span per task attempt, current while the operator runs.

Started from ``on_task_instance_running`` (after templates are rendered, right before ``execute``) and
ended from the success/failed/skipped hooks in ``finalize``. While it is open, the span is the current
OTel context (user spans and instrumented libraries nest under it) and the task's log records carry its
``trace_id``/``span_id``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span
from pipetrace import attributes as A
from pipetrace import end_task_span, start_task_span
from pipetrace.carriers import inject
from pipetrace.redaction.text import status_description
from pipetrace.util.ratelimit import warn_once_per

from . import xcom
from .runs import SYSTEM, run_ref
from .settings import native_tracing, xcom_links

log = logging.getLogger("pipetrace.airflow")

TaskKey = tuple[str, str, str, int, int]


@dataclass
class _Open:
    span: Span
    token: object
    log_tokens: Mapping[str, Any] = field(default_factory=dict)


_lock = threading.Lock()
_open: dict[TaskKey, _Open] = {}


def _key(ti: Any) -> TaskKey:
    mi = ti.map_index if ti.map_index is not None else -1
    return (ti.dag_id, ti.run_id, ti.task_id, int(mi), int(ti.try_number or 0))


def _dag_run_conf(ti: Any) -> object:
    try:
        dag_run = ti.get_template_context().get("dag_run")
        return getattr(dag_run, "conf", None)
    except Exception:
        return None


def _attributes(ti: Any) -> dict[str, Any]:
    task = getattr(ti, "task", None)
    return {
        "airflow.dag_id": ti.dag_id,
        "airflow.task_id": ti.task_id,
        "airflow.dag_run.run_id": ti.run_id,
        "airflow.task_instance.hostname": getattr(ti, "hostname", None),
        "airflow.task_instance.queue": getattr(task, "queue", None),
        "airflow.operator": type(task).__name__ if task is not None else None,
    }


def _bind_logs(span: Span) -> Mapping[str, Any]:
    """Task log records carry the span's ids (Airflow's structlog chain merges contextvars)."""
    try:
        import structlog

        sc = span.get_span_context()
        if not sc.is_valid:
            return {}
        return structlog.contextvars.bind_contextvars(trace_id=f"{sc.trace_id:032x}", span_id=f"{sc.span_id:016x}")
    except Exception:
        return {}


def _unbind_logs(tokens: Mapping[str, Any]) -> None:
    if not tokens:
        return
    try:
        import structlog

        structlog.contextvars.reset_contextvars(**tokens)
    except Exception:
        pass


def _propagate_to_triggered_run(ti: Any, span: Span) -> None:
    """``TriggerDagRunOperator``: the triggered run's conf carries this span, so DAG-of-DAGs is one trace.

    Only adds ``traceparent``/``tracestate`` when the user's conf has none and is a dict (OpenLineage
    injects its parent run into the same conf the same way)."""
    task = ti.task
    if not any(cls.__name__ == "TriggerDagRunOperator" for cls in type(task).__mro__):
        return
    conf = getattr(task, "conf", None)
    if conf is not None and not isinstance(conf, dict):
        return
    if conf and ("traceparent" in conf or "airflow/dagrun_parent_trace_context" in conf):
        return
    carrier = inject({}, trace.set_span_in_context(span))
    extra = {k: v for k, v in carrier.items() if k in ("traceparent", "tracestate")}
    if extra:
        task.conf = {**(conf or {}), **extra}


def task_started(ti: Any) -> None:
    """Open the attempt's span and make it current."""
    key = _key(ti)
    stale = _open.pop(key, None)
    if stale is not None:  # a previous attempt in this process never finished
        _close(stale, result=A.RESULT_ERROR, error=None)
    native = native_tracing()
    ref = run_ref(ti.dag_id, ti.run_id, _dag_run_conf(ti), native_carrier=getattr(ti, "context_carrier", None))
    mapped = ti.map_index is not None and ti.map_index >= 0
    parent = None
    if ref.native or native:
        current = trace.get_current_span()
        if current.get_span_context().is_valid:  # Airflow's worker.* span
            parent = otel_context.get_current()
    links = xcom.start_consumer(ti, ref.ident) if xcom_links() else []
    span = start_task_span(
        SYSTEM, ti.dag_id, ti.run_id, ti.task_id, try_number=int(ti.try_number or 0),
        map_index=ti.map_index if mapped else None, attributes=_attributes(ti),
        links=links, upstream=ref.upstream,
        batch=ti.task_id if mapped else None,
        parent=parent, start_time=getattr(ti, "start_date", None),
    )
    token = otel_context.attach(trace.set_span_in_context(span))
    entry = _Open(span, token, _bind_logs(span))
    with _lock:
        _open[key] = entry
    try:
        _propagate_to_triggered_run(ti, span)
    except Exception as exc:
        warn_once_per(log, "airflow-trigger", "pipetrace: could not propagate context to triggered run: %r", exc)
    if xcom_links():
        xcom.consumer_started(ti, ref.ident, span, links)
        xcom.publish(ti, span)


def _close(entry: _Open, *, result: str | None, error: BaseException | str | None, end: Any = None) -> None:
    span = entry.span
    if isinstance(error, BaseException):
        end_task_span(span, error=error, result=result, end_time=end)
    else:
        if error:
            span.set_attribute(A.ERROR_TYPE, "airflow.TaskFailure")
            span.add_event("exception", {"exception.message": status_description(error, 4096)})
        end_task_span(span, result=result, end_time=end)
    try:
        otel_context.detach(entry.token)  # type: ignore[arg-type]
    except Exception:
        pass
    _unbind_logs(entry.log_tokens)


def task_finished(ti: Any, result: str, error: BaseException | str | None = None) -> None:
    """End the attempt's span with its result (success, failure, retry, skip)."""
    with _lock:
        entry = _open.pop(_key(ti), None)
    xcom.consumer_finished()
    if entry is None:
        return
    try:
        state = getattr(ti, "state", None)
        if state is not None:
            entry.span.set_attribute("airflow.task_instance.state", str(getattr(state, "value", state)))
    except Exception:
        pass
    # End where Airflow's record ends, so scheduler-side spans built from the same record (the batch
    # span of a mapped task) cover it exactly.
    _close(entry, result=result, error=error, end=_end_time(ti))


def _end_time(ti: Any) -> Any:
    end, start = getattr(ti, "end_date", None), getattr(ti, "start_date", None)
    if end is None or (start is not None and end < start):
        return None
    return end
