"""Worker side: one ``task {name}`` CONSUMER span per attempt, current while the task body runs.

``task_prerun`` starts it (parent = the publish span from the message headers, or a derived root for an
untraced producer), ``task_failure``/``task_retry`` mark it, ``task_postrun`` ends it with the attempt's
result. Revoked and rejected messages, which never run, get a span recorded at that moment.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

import pipetrace
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, TraceFlags
from pipetrace import attributes as A
from pipetrace.adapter import error_type, guarded, lazy_span, record_error, status_description
from pipetrace.adapter.messaging import consumer_span, link_limit, queued_ms, tracer
from pipetrace.util.ratelimit import warn_once_per

from . import common as C
from . import interop, lost
from .common import attempts, current

log = logging.getLogger("pipetrace.celery")

RESULTS = {"SUCCESS": A.RESULT_SUCCESS, "FAILURE": A.RESULT_FAILURE, "RETRY": A.RESULT_RETRY,
           "IGNORED": A.RESULT_SKIP, "REJECTED": A.RESULT_CANCELLATION, "REVOKED": A.RESULT_CANCELLATION}
# The Celery state each result stands for: ``celery.state`` is recorded only where it says more.
STATES = {A.RESULT_SUCCESS: "SUCCESS", A.RESULT_FAILURE: "FAILURE", A.RESULT_RETRY: "RETRY", A.RESULT_SKIP: "IGNORED"}
EXPECTED = "pipetrace.celery.expected_error"


def _chord_links(values: dict[str, Any], sc: SpanContext | None) -> list[Link]:
    """Links from a chord body to each header task's attempt (in the trace the body joins)."""
    raw = values.get(C.CHORD_HEADER)
    if not raw or sc is None:
        return []
    flags = TraceFlags(TraceFlags.SAMPLED)
    return [Link(SpanContext(sc.trace_id, C.attempt_span_id(i, 1), is_remote=True, trace_flags=flags),
                 {A.LINK_KIND: "result", A.MESSAGING_MESSAGE_ID: i})
            for i in [i for i in str(raw).split(",") if i][: link_limit()]]


def _task_attributes(task: Any, request: Any, task_id: str, values: dict[str, Any], try_number: int,
                     now_ns: int) -> tuple[dict[str, Any], str]:
    name = C.task_name(task, request)
    root_id = C.run_id(values, str(getattr(request, "root_id", None) or task_id))
    attrs = C.shared_attributes(getattr(task, "app", None), "process", name,
                                *C.destination(getattr(request, "delivery_info", None)))
    attrs[A.PIPELINE_NAME] = C.pipeline(values, name)  # the task id is the task run id: no messaging.message.id
    attrs[A.PIPELINE_RUN_ID] = root_id
    attrs[A.TASK_RUN_ID] = task_id
    attrs[A.TRY_NUMBER] = try_number
    group_index = getattr(request, "group_index", None)
    if isinstance(group_index, int):
        attrs[A.MAP_INDEX] = group_index
    group = getattr(request, "group", None)
    if group:
        attrs["celery.group_id"] = str(group)
    eta = getattr(request, "eta", None)
    wait = queued_ms(values, now_ns, eta)
    if wait is not None:
        attrs[A.QUEUED_MS] = wait
    if eta:
        attrs["celery.eta"] = str(eta)
    return attrs, root_id


def _start(task: Any, request: Any, task_id: str, now: int, caller: Context | None) -> Span:
    """The attempt's span, started at ``now`` (``caller``: the context an eager run was called in)."""
    values = C.read(request)
    try_number = int(getattr(request, "retries", 0) or 0) + 1
    attrs, root_id = _task_attributes(task, request, task_id, values, try_number, now)
    name = attrs[A.TASK_NAME]
    return consumer_span(f"task {name}", values, attrs, source=f"celery task {name}", caller=caller,
                         links=partial(_chord_links, values), start_time=now,
                         root_trace_id=lambda: C.run_identity(root_id).trace_id,
                         span_id=C.attempt_span_id(task_id, try_number), plain_attributes=True)


def task_prerun(sender: Any = None, task_id: Any = None, task: Any = None, **_: Any) -> None:
    try:
        if task is None or task_id is None or (interop.may_defer and interop.deferring()):
            return
        task_id = str(task_id)
        request = task.request
        now = time.time_ns()
        span: Span
        if getattr(request, "is_eager", False):  # apply()/always-eager: the caller's span may be the parent
            span = _start(task, request, task_id, now, otel_context.get_current())
        else:  # made when first needed, or after the attempt ends, off this thread (lazy_span)
            span = lazy_span(tracer(), partial(_start, task, request, task_id, now, None))
        workflow = C.Workflow(task, request, str(getattr(request, "root_id", None) or task_id))
        attempts.start(task_id, span, data=workflow)
        workflow.var_token = current.set(workflow)
    except Exception as exc:
        warn_once_per(log, "celery-prerun", "pipetrace: celery task not traced: %r", exc)


@guarded(log, "celery-failure", "celery failure not recorded")
def task_failure(sender: Any = None, task_id: Any = None, exception: Any = None, **_: Any) -> None:
    attempt = attempts.get(str(task_id))
    if not isinstance(exception, BaseException):
        return
    if attempt is None:
        if task_id is not None and not interop.deferring():
            lost.failure_without_attempt(sender, str(task_id), exception)  # worker lost, hard time limit
        return
    attempt.data.failed = True
    if isinstance(exception, tuple(getattr(sender, "throws", None) or ())):  # Task.throws: an outcome, not an error
        attempt.span.record_exception(exception, attributes={EXPECTED: True})
        attempt.span.set_attribute(A.ERROR_TYPE, error_type(exception))
        attempt.span.set_attribute(EXPECTED, True)
    else:
        record_error(attempt.span, exception)


@guarded(log, "celery-retry", "celery retry not recorded")
def task_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    span = attempts.current(str(getattr(request, "id", "")))
    if span is not None:
        span.add_event("celery.retry", {"celery.retry.reason": status_description(reason)})


def task_postrun(sender: Any = None, task_id: Any = None, state: Any = None, **_: Any) -> None:
    attempt = attempts.pop(str(task_id)) if task_id is not None else None  # (the context before it restored)
    if attempt is None:
        return
    try:
        result = RESULTS.get(str(state), A.RESULT_FAILURE if attempt.data.failed else A.RESULT_SUCCESS)
        attempt.span.set_attribute(A.TASK_RESULT, result)
        if STATES.get(result) != str(state):  # only when the result does not already say it (REJECTED, custom)
            attempt.span.set_attribute("celery.state", str(state))
        attempt.span.end()
    except Exception as exc:
        warn_once_per(log, "celery-postrun", "pipetrace: celery task span not ended: %r", exc)
    finally:
        try:
            current.reset(attempt.data.var_token)
        except Exception:
            current.set(None)


def _record_unrun(name: str, task_id: str, values: dict[str, Any], retries: Any, root_id: Any,
                  result: str, attrs: dict[str, Any], error: BaseException | str | None = None) -> None:
    """A span for an attempt that never ran (revoked before start, rejected, unknown task)."""
    extra = {A.MESSAGING_MESSAGE_ID: task_id, **attrs}
    wait = queued_ms(values)
    if wait is not None:
        extra[A.QUEUED_MS] = wait
    C.record_attempt(name, task_id, values, int(retries or 0) + 1, root_id, result, extra, error=error)


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
    _record_unrun(name, task_id, C.read(request), retries, getattr(request, "root_id", None), A.RESULT_CANCELLATION,
                  {"celery.revoked.reason": reason, "celery.state": "REVOKED"})


@guarded(log, "celery-rejected", "rejected celery message not recorded")
def task_rejected(sender: Any = None, message: Any = None, exc: Any = None, **_: Any) -> None:
    """An unknown or undecodable message on a task queue: recorded, then Celery rejects it."""
    if message is None or interop.deferring():
        return
    headers = getattr(message, "headers", None) or {}
    task_id = str(headers.get("id") or getattr(message, "delivery_tag", "") or "unknown")
    _record_unrun(str(headers.get("task") or "unknown"), task_id, C.read(headers), headers.get("retries"),
                  headers.get("root_id"), A.RESULT_ERROR, {"celery.state": "REJECTED"},
                  error=exc if isinstance(exc, BaseException) else "rejected")


@guarded(log, "celery-name-worker", "worker not named")
def name_worker(sender: Any = None, **_: Any) -> None:
    """``worker_init`` (main process, before the pool forks): ``service.name`` ``<app>-worker``."""
    pipetrace.set_component(f"{getattr(getattr(sender, 'app', None), 'main', None) or 'celery'}-worker")


@guarded(log, "celery-process-init", "worker process set-up failed")
def process_init(**_: Any) -> None:
    """In each prefork child: set up the provider and exporters now, not inside the first task."""
    pipetrace.get_tracer()
