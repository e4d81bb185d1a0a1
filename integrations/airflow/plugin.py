"""The Airflow plugin (entry point ``airflow.plugins``): installing pipetrace[airflow] is enough.

Airflow loads it in every component; its listener registers on the core and the task SDK listener
managers alike. ``AIRFLOW__PIPETRACE__ENABLED=false`` or ``PIPETRACE_ENABLED=0`` leaves it empty.
"""

from __future__ import annotations

try:  # the task SDK's class in workers; core re-exports the same shared class
    from airflow.sdk.plugins_manager import AirflowPlugin
except ImportError:  # pragma: no cover - older layouts
    from airflow.plugins_manager import AirflowPlugin  # type: ignore[assignment]

from .listener import listener
from .settings import enabled
from .state import install_filter
from .xcom import install as install_xcom_reads


def _listeners() -> list[object]:
    try:
        if not enabled():
            return []
        install_filter()
        install_xcom_reads()
        return [listener]
    except Exception:  # never break Airflow's plugin loading
        return []


class PipetracePlugin(AirflowPlugin):
    name = "pipetrace"
    listeners = _listeners()
