"""Attempts lost with their pool process (SIGKILL, OOM killer, segfault).

The child that ran the attempt dies before its span ends, so only the worker's main process can report
it: billiard turns the death into ``WorkerLostError`` and Celery calls ``Request.on_failure`` in the main
process. Celery then either gives up on the task and sends ``task_failure`` (e.g. ``task_acks_late``
without ``task_reject_on_worker_lost``) — the lost attempt is final and is recorded with the attempt's
derived span id (as is any failure reported by a process that did not run the attempt) — or requeues
the message without any signal (``task_reject_on_worker_lost``). The redelivered message runs the same
attempt again (same try number, same derived span id, its live span), so the lost run is recorded under
a span id of its own, with ``pipetrace.celery.requeued=true``. Celery has no hook for the requeue case,
hence the wrapper around ``Request.on_failure``, installed at ``worker_init`` (worker main processes).
"""

from __future__ import annotations

import contextvars
import logging
import time
from typing import Any

from opentelemetry.trace import SpanKind
from pipetrace import attributes as A
from pipetrace.carriers import extract
from pipetrace.identity import derive_task_span_id
from pipetrace.integrations.kombu.messaging import base_attributes
from pipetrace.spans import record_span
from pipetrace.util.ratelimit import warn_once_per

from . import headers as H
from . import interop
from .common import SYSTEM, attempt_span_id, broker_system, current_app, destination, run_identity

log = logging.getLogger("pipetrace.celery")

REQUEUED = "pipetrace.celery.requeued"
WORKER_PID = "celery.worker_pid"

_failing: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("pipetrace_celery_failing",
                                                                                  default=None)
_original: Any = None


def _exception(exc_info: Any) -> Any:
    exc = getattr(exc_info, "exception", None)
    return getattr(exc, "exc", exc)  # billiard's ExceptionWithTraceback


def _is_worker_lost(exc: Any) -> bool:
    return type(exc).__name__ == "WorkerLostError"


def record(request: Any, task_id: str, exc: BaseException, *, span_id: int | None = None,
           requeued: bool = False) -> None:
    """An error span for an attempt whose process died; ``request`` is a worker ``Request`` (main
    process) or a task ``Context`` (``task_failure``'s ``sender.request``)."""
    values = H.read(request)
    task = getattr(request, "task", None)  # a Task on a worker Request, the task name on a Context
    name = str(getattr(request, "task_name", None) or task or "unknown")
    context = getattr(request, "_context", request)
    try_number = int(getattr(context, "retries", 0) or 0) + 1
    root = H.run_id(values, str(getattr(context, "root_id", None) or task_id))
    dest, rk = destination(getattr(request, "delivery_info", None))
    app = getattr(task, "app", None) or current_app()
    now = time.time_ns()
    started = getattr(request, "time_start", None)
    start = int(started * 1e9) if isinstance(started, (int, float)) and started else now
    attrs = base_attributes(broker_system(app), dest, "process", task_id, routing_key=rk)
    attrs.update({A.SYSTEM: SYSTEM, A.PIPELINE_NAME: H.pipeline(values, name),
                  A.PIPELINE_RUN_ID: root, A.TASK_NAME: name, A.TASK_RUN_ID: task_id, A.TRY_NUMBER: try_number,
                  "celery.state": "FAILURE"})
    pid = getattr(request, "worker_pid", None)
    if pid:
        attrs[WORKER_PID] = int(pid)
    if requeued:
        attrs[REQUEUED] = True
        attrs["celery.state"] = "REQUEUED"
    if span_id is None:
        span_id = attempt_span_id(task_id, try_number)
    record_span(run_identity(root), span_id, f"task {name}", start=start, end=max(now, start),
                parent=extract(values, source=f"celery task {name}"), attributes=attrs, result=A.RESULT_FAILURE,
                kind=SpanKind.CONSUMER, synthetic=True, error=exc)


def failure_without_attempt(sender: Any, task_id: str, exception: BaseException) -> None:
    """``task_failure`` in a process that did not run the attempt: the attempt is lost for good."""
    failing = _failing.get()
    if failing is not None and failing["id"] == task_id:
        failing["reported"] = True
        record(failing["request"], task_id, exception)
        return
    record(getattr(sender, "request", None), task_id, exception)


def traced_on_failure(self: Any, exc_info: Any, *args: Any, **kwargs: Any) -> Any:
    original = _original
    assert original is not None
    try:
        exc = _exception(exc_info)
        lost = _is_worker_lost(exc) and not interop.deferring()
    except Exception:
        lost = False
    if not lost:
        return original(self, exc_info, *args, **kwargs)
    failing = {"id": str(self.id), "request": self, "reported": False}
    token = _failing.set(failing)
    try:
        return original(self, exc_info, *args, **kwargs)
    finally:
        _failing.reset(token)
        if not failing["reported"]:  # requeued (or retried): the message runs this attempt again
            try:
                ctx = getattr(self, "_context", None)
                try_number = int(getattr(ctx, "retries", 0) or 0) + 1
                span_id = derive_task_span_id(SYSTEM, SYSTEM, str(self.id), f"lost-{self.worker_pid}",
                                              int((self.time_start or 0) * 1e6) % 10**12, try_number)
                record(self, str(self.id), exc, span_id=span_id, requeued=True)
            except Exception as err:
                warn_once_per(log, "celery-lost", "pipetrace: lost celery attempt not recorded: %r", err)


def patch_worker(**_: Any) -> None:
    """``worker_init`` (main process of a worker): wrap ``Request.on_failure``."""
    global _original
    try:
        from celery.worker.request import Request

        if _original is None:
            _original = Request.on_failure
            Request.on_failure = traced_on_failure  # type: ignore[method-assign]
    except Exception as exc:
        warn_once_per(log, "celery-lost-patch", "pipetrace: lost celery attempts not traced: %r", exc)


def unpatch() -> None:
    global _original
    if _original is not None:
        from celery.worker.request import Request

        Request.on_failure = _original  # type: ignore[method-assign]
        _original = None
