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
from pipetrace.util.ratelimit import warn_once_per

from . import batches, runs

log = logging.getLogger("pipetrace.prefect")

_originals: list[tuple[Any, str, Any]] = []


def _replace(owner: Any, name: str, wrapper_factory: Callable[[Any], Any]) -> None:
    original = owner.__dict__[name]
    _originals.append((owner, name, original))
    setattr(owner, name, wrapper_factory(original))


def _wrap_post_init(original: Callable[[Any], None]) -> Callable[[Any], None]:
    def __post_init__(self: Any) -> None:
        original(self)
        try:
            from .telemetry import PipetraceRunTelemetry

            self._telemetry = PipetraceRunTelemetry(engine=weakref.ref(self))
        except Exception as exc:
            warn_once_per(log, "prefect-engine", "pipetrace: prefect run not traced: %r", exc)

    __post_init__.__wrapped__ = original  # type: ignore[attr-defined]
    return __post_init__


def _wrap_map(original: Callable[..., Any]) -> Callable[..., Any]:
    def map(self: Any, task: Any, parameters: Any, wait_for: Any = None) -> Any:  # noqa: A001
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
            return original(self, task, parameters, wait_for)
        with batches.mapping(batch):
            return original(self, task, parameters, wait_for)

    map.__wrapped__ = original  # type: ignore[attr-defined]
    return map


def install() -> None:
    from prefect import flow_engine, task_engine, task_runners

    _replace(flow_engine.BaseFlowRunEngine, "__post_init__", _wrap_post_init)
    _replace(task_engine.BaseTaskRunEngine, "__post_init__", _wrap_post_init)
    _replace(task_runners.TaskRunner, "map", _wrap_map)
    for cls in (task_runners.ThreadPoolTaskRunner, task_runners.ProcessPoolTaskRunner,
                task_runners.PrefectTaskRunner):
        if "submit" in cls.__dict__:
            _replace(cls, "submit", batches.wrap_submit)


def remove() -> None:
    while _originals:
        owner, name, original = _originals.pop()
        setattr(owner, name, original)
