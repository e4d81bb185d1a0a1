"""The Airflow plugin (entry point ``airflow.plugins``: installing pipetrace[airflow] is enough) and its
listener, the one place that receives Airflow events. Airflow loads it in every component; the listener
registers on the task SDK's listener manager (task process: ``RuntimeTaskInstance``) and core's
(scheduler, ``dag.test()``: ``DagRun``, ORM ``TaskInstance``). Every hook is guarded: a pipetrace failure
is logged, never raised. ``AIRFLOW__PIPETRACE__ENABLED=false`` or ``PIPETRACE_ENABLED=0`` empties it.
"""

from __future__ import annotations

try:  # the task SDK's class in workers; core re-exports the same shared class
    from airflow.sdk.plugins_manager import AirflowPlugin
except ImportError:  # pragma: no cover - older layouts
    from airflow.plugins_manager import AirflowPlugin  # type: ignore[assignment]

import logging
import sys
from typing import Any

from pipetrace import attributes as A
from pipetrace import set_component
from pipetrace.adapter import guarded
from pluggy import HookimplMarker

from . import runs, worker
from .settings import active, enabled, install_filter
from .xcom import install as install_xcom_reads

log = logging.getLogger("pipetrace.airflow")
hookimpl = HookimplMarker("airflow")  # the marker both Airflow listener managers use
_guarded = guarded(log, enabled=active)

# `airflow <command>` → the component named in service.name (the task process names itself at task start)
COMPONENTS = {"scheduler": "airflow-scheduler", "dag-processor": "airflow-dag-processor",
              "triggerer": "airflow-triggerer", "api-server": "airflow-api-server", "worker": "airflow-worker"}


def component_of(argv: list[str]) -> str | None:
    """Which Airflow component this command line starts (``airflow scheduler`` → ``airflow-scheduler``)."""
    if not argv or not argv[0].endswith("airflow"):
        return None
    return next((COMPONENTS[a] for a in argv[1:3] if a in COMPONENTS), None)


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
        retry = runs.state_name(getattr(task_instance, "state", None)) == "up_for_retry"
        if _in_task_process(task_instance):
            worker.task_finished(task_instance, A.RESULT_RETRY if retry else A.RESULT_FAILURE, error)
        else:
            runs.task_failed_outside_worker(task_instance, error)

    @hookimpl
    @_guarded
    def on_dag_run_success(self, dag_run: Any, msg: str) -> None:
        runs.run_finished(dag_run, A.RESULT_SUCCESS)

    @hookimpl
    @_guarded
    def on_dag_run_failed(self, dag_run: Any, msg: str) -> None:
        runs.run_finished(dag_run, A.RESULT_FAILURE)


listener = AirflowListener()


def _listeners() -> list[object]:
    try:
        if not enabled():
            return []
        install_filter()
        install_xcom_reads()
        if name := component_of(sys.argv):
            set_component(name)
        return [listener]
    except Exception:  # never break Airflow's plugin loading
        return []


class PipetracePlugin(AirflowPlugin):
    name = "pipetrace"
    listeners = _listeners()
