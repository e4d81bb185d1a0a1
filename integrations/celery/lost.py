"""Attempts lost with their pool process (SIGKILL, OOM killer, segfault): only the worker's main process
can report them. billiard turns the death into ``WorkerLostError`` and Celery calls ``Request.on_failure``
there, then either gives up and sends ``task_failure`` — the attempt is final and is recorded under its
derived span id (as is any failure reported by a process that did not run the attempt) — or requeues the
message without any signal (``task_reject_on_worker_lost``): the redelivered message runs the same attempt
again (same derived span id), so the lost run gets a span id of its own and
``pipetrace.celery.requeued=true``. Celery has no hook for that case, hence the (``wrapt``) wrapper
around ``Request.on_failure``, installed at ``worker_init`` (worker main processes).
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

from pipetrace import attributes as A
from pipetrace.adapter import Patches, guarded, warn_once_per
from pipetrace.adapter.headers import delivered_to
from pipetrace.adapter.message_runs import REQUEUED
from pipetrace.adapter.messaging import app_system, base_attributes

from . import interop
from .common import current_app, read, record_attempt, workflows

log = logging.getLogger("pipetrace.celery")

WORKER_PID = "celery.worker_pid"

_failing: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("pipetrace_celery_failing",
                                                                                  default=None)


def record(request: Any, task_id: str, exc: BaseException, *, span_id: int | None = None,
           requeued: bool = False) -> None:
    """An error span for an attempt whose process died; ``request`` is a worker ``Request`` (main
    process) or a task ``Context`` (``task_failure``'s ``sender.request``)."""
    values = read(request)
    task = getattr(request, "task", None)  # a Task on a worker Request, the task name on a Context
    name = str(getattr(request, "task_name", None) or task or "unknown")
    context = getattr(request, "_context", request)
    dest, rk = delivered_to(getattr(request, "delivery_info", None), "celery")
    app = getattr(task, "app", None) or current_app()
    started = getattr(request, "time_start", None)
    attrs: dict[str, Any] = {"celery.state": "REQUEUED" if requeued else "FAILURE"}
    pid = getattr(request, "worker_pid", None)
    if pid:
        attrs[WORKER_PID] = int(pid)
    if requeued:
        attrs[REQUEUED] = True
    record_attempt(name, task_id, values, int(getattr(context, "retries", 0) or 0) + 1,
                   getattr(context, "root_id", None), A.RESULT_FAILURE, attrs,
                   messaging=base_attributes(app_system(app), dest, "process", task_id, routing_key=rk),
                   start=int(started * 1e9) if isinstance(started, (int, float)) and started else None,
                   span_id=span_id, error=exc)


def failure_without_attempt(sender: Any, task_id: str, exception: BaseException) -> None:
    """``task_failure`` in a process that did not run the attempt: the attempt is lost for good."""
    failing = _failing.get()
    if failing is not None and failing["id"] == task_id:
        failing["reported"] = True
        record(failing["request"], task_id, exception)
        return
    record(getattr(sender, "request", None), task_id, exception)


def traced_on_failure(wrapped: Any, self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not args:
        return wrapped(*args, **kwargs)
    try:
        exc: Any = getattr(args[0], "exception", None)
        exc = getattr(exc, "exc", exc)  # billiard's ExceptionWithTraceback
        lost = type(exc).__name__ == "WorkerLostError" and not interop.deferring()
    except Exception:
        lost = False
    if not lost:
        return wrapped(*args, **kwargs)
    failing = {"id": str(self.id), "request": self, "reported": False}
    token = _failing.set(failing)
    try:
        return wrapped(*args, **kwargs)
    finally:
        _failing.reset(token)
        if not failing["reported"]:  # requeued (or retried): the message runs this attempt again
            try:
                ctx = getattr(self, "_context", None)
                try_number = int(getattr(ctx, "retries", 0) or 0) + 1
                span_id = workflows.lost_span_id(str(self.id), self.worker_pid, self.time_start, try_number)
                record(self, str(self.id), exc, span_id=span_id, requeued=True)
            except Exception as err:
                warn_once_per(log, "celery-lost", "pipetrace: lost celery attempt not recorded: %r", err)


patches = Patches("celery", [("celery.worker.request", "Request", "on_failure", traced_on_failure)])


@guarded(log, "celery-lost-patch", "lost celery attempts not traced")
def patch_worker(**_: Any) -> None:
    """``worker_init`` (main process of a worker): wrap ``Request.on_failure``."""
    patches.apply()
