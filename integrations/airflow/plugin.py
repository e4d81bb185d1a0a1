"""The Airflow plugin (entry point ``airflow.plugins``): installing pipetrace[airflow] is enough.

Airflow loads it in every component; its listener registers on the core and the task SDK listener
managers alike. ``AIRFLOW__PIPETRACE__ENABLED=false`` or ``PIPETRACE_ENABLED=0`` leaves it empty.
"""

from __future__ import annotations

try:  # the task SDK's class in workers; core re-exports the same shared class
    from airflow.sdk.plugins_manager import AirflowPlugin
except ImportError:  # pragma: no cover - older layouts
    from airflow.plugins_manager import AirflowPlugin  # type: ignore[assignment]

import sys

from pipetrace import set_component

from .listener import listener
from .settings import enabled
from .state import install_filter
from .xcom import install as install_xcom_reads

# `airflow <command>` → the component named in service.name (the task process names itself at task start)
COMPONENTS = {"scheduler": "airflow-scheduler", "dag-processor": "airflow-dag-processor",
              "triggerer": "airflow-triggerer", "api-server": "airflow-api-server", "worker": "airflow-worker"}


def component_of(argv: list[str]) -> str | None:
    """Which Airflow component this command line starts (``airflow scheduler`` → ``airflow-scheduler``)."""
    if not argv or not argv[0].endswith("airflow"):
        return None
    return next((COMPONENTS[a] for a in argv[1:3] if a in COMPONENTS), None)


def _listeners() -> list[object]:
    try:
        if not enabled():
            return []
        install_filter()
        install_xcom_reads()
        name = component_of(sys.argv)
        if name:
            set_component(name)
        return [listener]
    except Exception:  # never break Airflow's plugin loading
        return []


class PipetracePlugin(AirflowPlugin):
    name = "pipetrace"
    listeners = _listeners()
