"""Where pipetrace plugs into Prefect (every wrapper removed by :func:`remove`): after an engine is built,
its ``_telemetry`` becomes a :class:`~.telemetry.PipetraceRunTelemetry` (Prefect has no global per-run
hook); ``TaskRunner.map`` opens a batch around its submits, each of which hands the next map index to the
submitted run; every value ``Secret.get()`` returns is a known secret, masked in every span."""

from __future__ import annotations

import functools
import logging
import os
import weakref
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from pipetrace.adapter import batches as fanout
from pipetrace.adapter import cached_get_tracer, warn_once_per
from pipetrace.adapter.patching import Patches
from prefect.telemetry import run_telemetry

from . import runs

log = logging.getLogger("pipetrace.prefect")

Wrapped = Callable[..., Any]
patches = Patches("prefect")

ENV_MEMBER = "PIPETRACE_PREFECT_MAP"
"""Membership for a process-pool worker, which runs the task in the submit's environment."""
_ENV_KEY = getattr(os.environ, "encodekey", str)(ENV_MEMBER)  # its key in os.environ's own dict


def _post_init(wrapped: Wrapped, engine: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """After an engine is built: its telemetry object becomes pipetrace's, in place (its tracer and
    setting kept; a new object costs ~10 µs a task run)."""
    wrapped(*args, **kwargs)
    try:
        native = engine._telemetry
        if type(native) is run_telemetry.RunTelemetry:  # (a user's own subclass is left alone)
            native.__class__, native.engine = _ours(), weakref.ref(engine)
    except Exception as exc:
        warn_once_per(log, "prefect-engine", "pipetrace: prefect run not traced: %r", exc)


@functools.cache
def _ours() -> type:  # (imported once: an import statement in the hook costs every engine ~1 µs)
    from .telemetry import PipetraceRunTelemetry

    return PipetraceRunTelemetry


def _map(wrapped: Wrapped, runner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``TaskRunner.map(task, parameters, wait_for=None)`` inside a ``batch`` span."""
    task: Any = args[0] if args else kwargs.get("task")
    batch = None
    try:
        run = runs.flow_info_for_context()
        batch = run.batches.open(task.name, otel_context.get_current()) if run is not None else None
    except Exception as exc:
        warn_once_per(log, "prefect-map", "pipetrace: map batch not recorded: %r", exc)
    with fanout.mapping(batch):
        return wrapped(*args, **kwargs)


def _submit(wrapped: Wrapped, runner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A task runner's ``submit`` inside ``.map()``: the submitted run learns its map index (from its
    context, or on the process pool from the environment sent with it)."""
    member, env = None, None
    try:
        member = fanout.next_member()
        if member is not None and hasattr(runner, "_cached_env"):  # the process pool
            env = _process_env(runner)
            runner._cached_env = {**env, ENV_MEMBER: member.carrier()}
    except Exception as exc:  # never into the flow
        warn_once_per(log, "prefect-submit", "pipetrace: map index not recorded: %r", exc)
    if member is None:  # a plain submit: nothing to hand over
        return wrapped(*args, **kwargs)
    try:
        with fanout.submitting(member):
            return wrapped(*args, **kwargs)
    finally:
        if env is not None:
            runner._cached_env = env


def _process_env(runner: Any) -> dict[str, str]:
    """The environment a process-pool runner sends with the next task, built (and cached) the way Prefect
    builds it, so the first submit carries membership too."""
    from prefect.settings import get_current_settings

    current = get_current_settings()
    if runner._cached_env is None or runner._cached_env_settings is not current:
        runner._cached_env = current.to_environment_variables(exclude_unset=True) | os.environ
        runner._cached_env_settings = current
    return runner._cached_env


def take_member(task: str, run: runs.Run | None) -> fanout.Member | None:
    """The batch membership of the task run starting here (its context's, or its environment's on the
    process pool), if it belongs to ``run``."""
    member = fanout.take_member()
    data = getattr(os.environ, "_data", None)  # (os.environ.pop of a missing key costs ~3 µs: raised and caught)
    carried = os.environ.pop(ENV_MEMBER, None) if data is None or _ENV_KEY in data else None
    if member is None and run is not None:
        member = run.batches.member_from(carried, task)
    return member if member is not None and run is not None and member.batch.ident.run_id == run.run_id else None


def install() -> None:
    from prefect import flow_engine, task_engine, task_runners
    from prefect.blocks.system import Secret

    for owner, name, wrapper in ((run_telemetry, "get_tracer", cached_get_tracer),
                                 (flow_engine.BaseFlowRunEngine, "__post_init__", _post_init),
                                 (task_engine.BaseTaskRunEngine, "__post_init__", _post_init),
                                 (task_runners.TaskRunner, "map", _map),
                                 (task_runners.ThreadPoolTaskRunner, "submit", _submit),
                                 (task_runners.ProcessPoolTaskRunner, "submit", _submit),
                                 (task_runners.PrefectTaskRunner, "submit", _submit)):
        patches.wrap(owner, name, wrapper, own_only=True)
    patches.secrets(Secret, "get")
