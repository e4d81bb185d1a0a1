"""Canvas: a group and a chord header each get one live ``batch`` span parenting the member publishes,
and a chord body carries its header task ids so that its span links to every header task.

Celery has no canvas signals, so ``group.apply_async`` and ``chord.run`` are wrapped (``wrapt``,
restorably). A chain needs nothing: each link is published from inside the previous task's span.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from typing import Any

from pipetrace import attributes as A
from pipetrace.adapter import Patches, guarded_span, start_span, warn_once_per
from pipetrace.adapter.messaging import link_limit, tracer

from . import interop
from .common import CHORD_HEADER, SYSTEM, current, producer_runs

log = logging.getLogger("pipetrace.celery")

Wrapped = Callable[..., Any]
_chord_body: contextvars.ContextVar[Any] = contextvars.ContextVar("pipetrace_chord_body", default=None)


def _batch(kind: str, size: int, group_id: Any) -> Any:
    """A live ``batch {kind}`` span over the members' publishes, named after the run when it ends (the
    first member published names the run of a producer outside a task)."""
    def start() -> Any:
        attrs: dict[str, Any] = {A.SYSTEM: SYSTEM, A.BATCH_SIZE: size, "celery.canvas": kind}
        running = current.get()
        if running is not None:
            attrs[A.PIPELINE_NAME] = running.pipeline
            attrs[A.PIPELINE_RUN_ID] = running.run_id
        if group_id:
            attrs["celery.group_id"] = str(group_id)
        return start_span(tracer(), A.batch_span_name(kind), attributes=attrs)
    return guarded_span(start, log, "celery-batch", f"celery {kind} batch span failed", producer_runs.name_span)


def _group_apply_async(wrapped: Wrapped, self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        # (a chord's header: the chord's batch span is current)
        if interop.deferring() or not self.tasks or self.app.conf.task_always_eager or _chord_body.get() is not None:
            return wrapped(*args, **kwargs)
        size = len(self.tasks)
        group_id = self.options.get("task_id")
    except Exception as exc:
        warn_once_per(log, "celery-group", "pipetrace: celery group not traced: %r", exc)
        return wrapped(*args, **kwargs)
    with _batch("group", size, group_id):
        return wrapped(*args, **kwargs)


def _apply_tasks(wrapped: Wrapped, self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Sees the chord header tasks frozen, with their ids, just before they are published."""
    body = _chord_body.get()
    if body is None or not args:
        return wrapped(*args, **kwargs)
    tasks, args = args[0], args[1:]
    try:
        _chord_body.set(None)  # only the outermost header
        tasks = list(tasks)
        ids = [str(res.id) for _sig, res, _gid in tasks if getattr(res, "id", None)][: link_limit()]
        if ids:
            # Each header message carries the body it will trigger: mark every copy of it.
            targets = [body, kwargs.get("chord")] + [sig.options.get("chord") for sig, _r, _g in tasks]
            for target in {id(t): t for t in targets if isinstance(t, dict)}.values():
                opts = target.setdefault("options", {})
                opts["headers"] = {**(opts.get("headers") or {}), CHORD_HEADER: ",".join(ids)}
    except Exception as exc:
        warn_once_per(log, "celery-chord-links", "pipetrace: chord body links not set: %r", exc)
    return wrapped(tasks, *args, **kwargs)


def _chord_run(wrapped: Wrapped, self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if len(args) < 2:
        return wrapped(*args, **kwargs)
    header, body = args[0], args[1]
    try:
        if interop.deferring():
            return wrapped(*args, **kwargs)
        size = len(getattr(header, "tasks", None) or ())
    except Exception as exc:
        warn_once_per(log, "celery-chord", "pipetrace: celery chord not traced: %r", exc)
        return wrapped(*args, **kwargs)
    with _batch("chord", size, header.options.get("task_id")):
        token = _chord_body.set(body)
        try:
            return wrapped(*args, **kwargs)
        finally:
            _chord_body.reset(token)


patches = Patches("celery", [("celery.canvas", "group", "apply_async", _group_apply_async),
                   ("celery.canvas", "group", "_apply_tasks", _apply_tasks),
                   ("celery.canvas", "_chord", "run", _chord_run)])
