"""Canvas: a group and a chord header each get one live ``batch`` span parenting the member publishes,
and a chord body carries its header task ids so that its span links to every header task.

Celery has no canvas signals, so ``group.apply_async`` and ``chord.run`` are wrapped (restorably).
A chain needs nothing: each link is published from inside the previous task's span.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from pipetrace import attributes as A
from pipetrace.integrations.kombu.tracer import link_limit, tracer
from pipetrace.machinery import start_span
from pipetrace.util.ratelimit import warn_once_per

from . import headers as H
from . import interop
from .common import SYSTEM
from .state import current, producer_runs

log = logging.getLogger("pipetrace.celery")

_originals: dict[str, Callable[..., Any]] = {}
_chord_body: contextvars.ContextVar[Any] = contextvars.ContextVar("pipetrace_chord_body", default=None)


def _mark_body(body: dict[str, Any], ids: str) -> None:
    opts = body.setdefault("options", {})
    extra = dict(opts.get("headers") or {})
    extra[H.CHORD_HEADER] = ids
    opts["headers"] = extra


@contextmanager
def _batch(kind: str, size: int, group_id: Any) -> Iterator[None]:
    span: Any = trace.INVALID_SPAN
    try:
        attrs: dict[str, Any] = {A.SYSTEM: SYSTEM, A.BATCH_SIZE: size, "celery.canvas": kind}
        running = current.get()
        if running is not None:
            attrs[A.PIPELINE_NAME] = running.pipeline
            attrs[A.PIPELINE_RUN_ID] = running.run_id
        if group_id:
            attrs["celery.group_id"] = str(group_id)
        span = start_span(tracer(), A.batch_span_name(kind), attributes=attrs)
    except Exception as exc:
        warn_once_per(log, "celery-batch", "pipetrace: celery %s batch span failed: %r", kind, exc)
    with trace.use_span(span, end_on_exit=True, record_exception=True, set_status_on_exception=True):
        try:
            yield
        finally:
            _name_after_run(span)


def _name_after_run(span: Any) -> None:
    """A producer's batch span starts before its run has an id (the first member published names the
    run): give it the run's id and pipeline before it ends."""
    try:
        attrs = getattr(span, "attributes", None)
        if attrs is not None and A.PIPELINE_RUN_ID not in attrs:
            known = producer_runs.get(span.get_span_context().trace_id)
            if known is not None:
                span.set_attribute(A.PIPELINE_RUN_ID, known[0])
                span.set_attribute(A.PIPELINE_NAME, known[1])
    except Exception as exc:
        warn_once_per(log, "celery-batch-run", "pipetrace: celery batch span not named: %r", exc)


def _group_apply_async(self: Any, *args: Any, **kwargs: Any) -> Any:
    original = _originals["group"]
    try:
        if interop.deferring() or not self.tasks or self.app.conf.task_always_eager:
            return original(self, *args, **kwargs)
        if _chord_body.get() is not None:  # a chord's header: the chord's batch span is current
            return original(self, *args, **kwargs)
        size = len(self.tasks)
        group_id = self.options.get("task_id")
    except Exception as exc:
        warn_once_per(log, "celery-group", "pipetrace: celery group not traced: %r", exc)
        return original(self, *args, **kwargs)
    with _batch("group", size, group_id):
        return original(self, *args, **kwargs)


def _apply_tasks(self: Any, tasks: Any, *args: Any, **kwargs: Any) -> Any:
    """Sees the chord header tasks frozen, with their ids, just before they are published."""
    original = _originals["apply_tasks"]
    body = _chord_body.get()
    if body is None:
        return original(self, tasks, *args, **kwargs)
    try:
        _chord_body.set(None)  # only the outermost header
        tasks = list(tasks)
        ids = [str(res.id) for _sig, res, _gid in tasks if getattr(res, "id", None)][: link_limit()]
        if ids:
            # Each header message carries the body it will trigger: mark every copy of it.
            targets = [body, kwargs.get("chord")] + [sig.options.get("chord") for sig, _r, _g in tasks]
            for target in {id(t): t for t in targets if isinstance(t, dict)}.values():
                _mark_body(target, ",".join(ids))
    except Exception as exc:
        warn_once_per(log, "celery-chord-links", "pipetrace: chord body links not set: %r", exc)
    return original(self, tasks, *args, **kwargs)


def _chord_run(self: Any, header: Any, body: Any, *args: Any, **kwargs: Any) -> Any:
    original = _originals["chord"]
    try:
        if interop.deferring():
            return original(self, header, body, *args, **kwargs)
        size = len(getattr(header, "tasks", None) or ())
    except Exception as exc:
        warn_once_per(log, "celery-chord", "pipetrace: celery chord not traced: %r", exc)
        return original(self, header, body, *args, **kwargs)
    with _batch("chord", size, header.options.get("task_id")):
        token = _chord_body.set(body)
        try:
            return original(self, header, body, *args, **kwargs)
        finally:
            _chord_body.reset(token)


def patch() -> None:
    from celery import canvas

    if "group" not in _originals:
        _originals["group"] = canvas.group.apply_async
        canvas.group.apply_async = _group_apply_async
    if "apply_tasks" not in _originals:
        _originals["apply_tasks"] = canvas.group._apply_tasks
        canvas.group._apply_tasks = _apply_tasks
    if "chord" not in _originals:
        _originals["chord"] = canvas._chord.run
        canvas._chord.run = _chord_run


def unpatch() -> None:
    from celery import canvas

    if "group" in _originals:
        canvas.group.apply_async = _originals.pop("group")
    if "apply_tasks" in _originals:
        canvas.group._apply_tasks = _originals.pop("apply_tasks")
    if "chord" in _originals:
        canvas._chord.run = _originals.pop("chord")
