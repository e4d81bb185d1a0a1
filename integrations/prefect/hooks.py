"""Where pipetrace plugs into Prefect: each engine's telemetry object and the task runners' map/submit.

Prefect 3.9 has no global per-run hook (state hooks are per flow/task object), so the engines' own
telemetry seam is used: after an engine is built, its ``_telemetry`` becomes a
:class:`~.telemetry.PipetraceRunTelemetry`. ``TaskRunner.map`` opens a batch around its submits. Every
wrapper keeps the original and is removed by :func:`remove`.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from pipetrace.adapter import unwrap, warn_once_per, wrap

from . import batches, runs

log = logging.getLogger("pipetrace.prefect")

Wrapped = Callable[..., Any]
_wrapped: list[tuple[Any, str]] = []


def _post_init(wrapped: Wrapped, engine: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """After an engine is built: its telemetry object becomes pipetrace's."""
    wrapped(*args, **kwargs)
    try:
        from .telemetry import PipetraceRunTelemetry

        engine._telemetry = PipetraceRunTelemetry(engine=weakref.ref(engine))
    except Exception as exc:
        warn_once_per(log, "prefect-engine", "pipetrace: prefect run not traced: %r", exc)


def _map(wrapped: Wrapped, runner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``TaskRunner.map(task, parameters, wait_for=None)`` inside a ``batch`` span."""
    task: Any = args[0] if args else kwargs.get("task")
    batch = None
    try:
        from prefect.context import FlowRunContext

        flow_ctx = FlowRunContext.get()
        info = runs.flow_info_for_context(flow_ctx) if flow_ctx is not None else None
        if info is not None:
            batch = batches.open_batch(info, task.name, otel_context.get_current())
    except Exception as exc:
        warn_once_per(log, "prefect-map", "pipetrace: map batch not recorded: %r", exc)
    if batch is None:
        return wrapped(*args, **kwargs)
    with batches.mapping(batch):
        return wrapped(*args, **kwargs)



def _own(owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
    if name in vars(owner) and wrap(owner, name, wrapper):
        _wrapped.append((owner, name))


def install() -> None:
    from prefect import flow_engine, task_engine, task_runners

    _own(flow_engine.BaseFlowRunEngine, "__post_init__", _post_init)
    _own(task_engine.BaseTaskRunEngine, "__post_init__", _post_init)
    _own(task_runners.TaskRunner, "map", _map)
    for cls in (task_runners.ThreadPoolTaskRunner, task_runners.ProcessPoolTaskRunner,
                task_runners.PrefectTaskRunner):
        _own(cls, "submit", batches.submit)


def remove() -> None:
    while _wrapped:
        unwrap(*_wrapped.pop())
