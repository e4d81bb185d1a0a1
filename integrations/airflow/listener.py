"""The Airflow listener: the one place that receives Airflow events.

Registered by the plugin on both listener managers: the task SDK's (task process: ``RuntimeTaskInstance``)
and core's (scheduler, API server, ``dag.test()``: ``DagRun`` and core ``TaskInstance``). Every hook is
guarded: a pipetrace failure is logged (rate limited) and never reaches Airflow or the task.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from pipetrace import attributes as A
from pipetrace import set_component
from pipetrace.util.ratelimit import warn_once_per
from pluggy import HookimplMarker

from . import scheduler, state, worker

log = logging.getLogger("pipetrace.airflow")
hookimpl = HookimplMarker("airflow")  # the marker both Airflow listener managers use

F = TypeVar("F", bound=Callable[..., None])


def _guarded(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        if not state.active():
            return
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            warn_once_per(log, f"airflow-{fn.__name__}", "pipetrace: %s hook failed: %r", fn.__name__, exc)

    return wrapper  # type: ignore[return-value]


def _in_task_process(ti: Any) -> bool:
    """The task SDK's ``RuntimeTaskInstance`` (live spans), not core's ORM ``TaskInstance``."""
    return type(ti).__module__.startswith("airflow.sdk")


class AirflowListener:
    """Listener object (pluggy plugin); method names are Airflow's hook names."""

    @hookimpl
    @_guarded
    def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:
        if _in_task_process(task_instance):
            set_component("airflow-task")
            worker.task_started(task_instance)

    @hookimpl
    @_guarded
    def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
        if _in_task_process(task_instance):
            worker.task_finished(task_instance, A.RESULT_SUCCESS)

    @hookimpl
    @_guarded
    def on_task_instance_skipped(self, previous_state: Any, task_instance: Any) -> None:
        if _in_task_process(task_instance):
            worker.task_finished(task_instance, A.RESULT_SKIP)

    @hookimpl
    @_guarded
    def on_task_instance_failed(self, previous_state: Any, task_instance: Any, error: Any) -> None:
        retry = scheduler._state(getattr(task_instance, "state", None)) == "up_for_retry"
        if _in_task_process(task_instance):
            worker.task_finished(task_instance, A.RESULT_RETRY if retry else A.RESULT_FAILURE, error)
        else:
            scheduler.task_failed_outside_worker(task_instance, error)

    @hookimpl
    @_guarded
    def on_dag_run_success(self, dag_run: Any, msg: str) -> None:
        scheduler.run_finished(dag_run, A.RESULT_SUCCESS)

    @hookimpl
    @_guarded
    def on_dag_run_failed(self, dag_run: Any, msg: str) -> None:
        scheduler.run_finished(dag_run, A.RESULT_FAILURE)


listener = AirflowListener()
