"""Worker side: one ``task {name}`` CONSUMER span per attempt, current while the task body runs.

``task_prerun`` starts it (parent = the publish span from the message headers, or a derived root for an
untraced producer), ``task_failure``/``task_retry`` mark it, ``task_postrun`` ends it with the attempt's
result. Revoked and rejected messages, which never run, get a span recorded at that moment.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pipetrace
from opentelemetry import context as otel_context
from pipetrace import attributes as A
from pipetrace.adapter import guarded, record_error, status_description
from pipetrace.adapter.headers import delivered_to
from pipetrace.adapter.workflows import Running
from pipetrace.util.ratelimit import warn_once_per

from . import common as C
from . import interop, lost
from .common import attempts

log = logging.getLogger("pipetrace.celery")

RESULTS = {"SUCCESS": A.RESULT_SUCCESS, "FAILURE": A.RESULT_FAILURE, "RETRY": A.RESULT_RETRY,
           "IGNORED": A.RESULT_SKIP, "REJECTED": A.RESULT_CANCELLATION, "REVOKED": A.RESULT_CANCELLATION}
# The Celery state each result stands for: ``celery.state`` is recorded only where it says more.
STATES = {A.RESULT_SUCCESS: "SUCCESS", A.RESULT_FAILURE: "FAILURE", A.RESULT_RETRY: "RETRY", A.RESULT_SKIP: "IGNORED"}
EXPECTED = "pipetrace.celery.expected_error"


def task_prerun(sender: Any = None, task_id: Any = None, task: Any = None, **_: Any) -> None:
    """Start the attempt's span (its record is made when ``task_postrun`` ends it) and make it current."""
    try:
        if task is None or task_id is None or (interop.coexistence.may_defer and interop.deferring()):
            return
        task_id = str(task_id)
        request = task.request
        now = time.time_ns()
        name = C.task_name(task, request)
        attrs = C.shared_attributes(getattr(task, "app", None), "process", name,
                                    *delivered_to(getattr(request, "delivery_info", None), "celery"))
        group, eta = getattr(request, "group", None), getattr(request, "eta", None)
        if group:
            attrs["celery.group_id"] = str(group)
        if eta:
            attrs["celery.eta"] = str(eta)
        root_id = str(getattr(request, "root_id", None) or task_id)
        # a deferred span: a span made only at task_postrun (a lazy handle around this call) cost ~9 µs a task
        # more (celery_inprocess.py --cpu 1 --before); apply()/always-eager: the caller's span may be the parent
        span = C.workflows.attempt_span(
            name, task_id, int(getattr(request, "retries", 0) or 0) + 1, root_id, C.read(request), attrs, now_ns=now,
            eta=eta, map_index=getattr(request, "group_index", None),
            caller=otel_context.get_current() if getattr(request, "is_eager", False) else None)
        attempts.add(task_id, Running(span, C.workflows, task, request, root_id))  # current until task_postrun
    except Exception as exc:
        warn_once_per(log, "celery-prerun", "pipetrace: celery task not traced: %r", exc)


@guarded(log, "celery-failure", "celery failure not recorded")
def task_failure(sender: Any = None, task_id: Any = None, exception: Any = None, **_: Any) -> None:
    attempt = attempts.get(str(task_id))
    if not isinstance(exception, BaseException):
        return
    if not isinstance(attempt, Running):
        if task_id is not None and not interop.deferring():
            lost.failure_without_attempt(sender, str(task_id), exception)  # worker lost, hard time limit
        return
    attempt.failed = True
    expected = isinstance(exception, tuple(getattr(sender, "throws", None) or ()))  # Task.throws: an outcome
    record_error(attempt.span, exception, expected=EXPECTED if expected else None)


@guarded(log, "celery-retry", "celery retry not recorded")
def task_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    span = attempts.current(str(getattr(request, "id", "")))
    if span is not None:
        span.add_event("celery.retry", {"celery.retry.reason": status_description(reason)})


def task_postrun(sender: Any = None, task_id: Any = None, state: Any = None, **_: Any) -> None:
    attempt = attempts.pop(str(task_id)) if task_id is not None else None  # (the contexts before it restored)
    if not isinstance(attempt, Running):
        return
    try:
        span, state = attempt.span, str(state)
        result = RESULTS.get(state, A.RESULT_FAILURE if attempt.failed else A.RESULT_SUCCESS)
        span.set_attribute(A.TASK_RESULT, result)
        if STATES.get(result) != state:  # only when the result does not already say it (REJECTED, custom)
            span.set_attribute("celery.state", state)
        span.end()
    except Exception as exc:
        warn_once_per(log, "celery-postrun", "pipetrace: celery task span not ended: %r", exc)


@guarded(log, "celery-revoked", "revoked celery task not recorded")
def task_revoked(sender: Any = None, request: Any = None, terminated: Any = None, signum: Any = None,
                 expired: Any = None, **_: Any) -> None:
    if request is None or interop.deferring():
        return
    task_id = str(getattr(request, "id", None) or getattr(request, "task_id", ""))
    running = attempts.pop(task_id)
    reason = "expired" if expired else ("terminated" if terminated else "revoked")
    if running is not None:  # terminated while running in this process
        running.span.set_attribute("celery.revoked.reason", reason)
        running.span.set_attribute(A.TASK_RESULT, A.RESULT_CANCELLATION)
        running.span.end()
        return
    # Celery sends the task as sender and the request's Context (which has ``task``, the name)
    name = str(getattr(sender, "name", None) or getattr(request, "task_name", None)
               or getattr(request, "task", None) or getattr(request, "name", None) or "unknown")
    retries = getattr(request, "retries", None)
    if retries is None:
        retries = (getattr(request, "request_dict", None) or {}).get("retries")
    C.record_attempt(name, task_id, C.read(request), int(retries or 0) + 1, getattr(request, "root_id", None),
                     A.RESULT_CANCELLATION, {"celery.revoked.reason": reason, "celery.state": "REVOKED"}, unrun=True)


@guarded(log, "celery-rejected", "rejected celery message not recorded")
def task_rejected(sender: Any = None, message: Any = None, exc: Any = None, **_: Any) -> None:
    """An unknown or undecodable message on a task queue: recorded, then Celery rejects it."""
    if message is None or interop.deferring():
        return
    headers = getattr(message, "headers", None) or {}
    task_id = str(headers.get("id") or getattr(message, "delivery_tag", "") or "unknown")
    C.record_attempt(str(headers.get("task") or "unknown"), task_id, C.read(headers),
                     int(headers.get("retries") or 0) + 1, headers.get("root_id"), A.RESULT_ERROR,
                     {"celery.state": "REJECTED"}, unrun=True,
                     error=exc if isinstance(exc, BaseException) else "rejected")


@guarded(log, "celery-name-worker", "worker not named")
def name_worker(sender: Any = None, **_: Any) -> None:
    """``worker_init`` (main process, before the pool forks): ``service.name`` ``<app>-worker``."""
    pipetrace.set_component(f"{getattr(getattr(sender, 'app', None), 'main', None) or 'celery'}-worker")


@guarded(log, "celery-process-init", "worker process set-up failed")
def process_init(**_: Any) -> None:
    """In each prefork child: set up the provider and exporters now, not inside the first task."""
    pipetrace.get_tracer()
