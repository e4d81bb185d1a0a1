"""Whether the Airflow adapter is on, and whether Airflow's own ``[traces] otel_on`` tracing is on.

Read once per process: the answers only change on restart, and the hooks run for every task.
"""

from __future__ import annotations

import functools
import logging
import os

log = logging.getLogger("pipetrace.airflow")

_FALSE = {"0", "false", "no", "off"}


def _airflow_conf(section: str, key: str) -> str | None:
    """A value from Airflow's configuration (the task SDK's in a worker, core's elsewhere)."""
    for module in ("airflow.sdk.configuration", "airflow.configuration"):
        try:
            conf = __import__(module, fromlist=["conf"]).conf
            value = conf.get(section, key, fallback=None)
            return None if value is None else str(value)
        except Exception:  # noqa: S112 - try the next configuration flavour
            continue
    return None


@functools.cache
def enabled() -> bool:
    """``AIRFLOW__PIPETRACE__ENABLED`` / ``[pipetrace] enabled`` and ``PIPETRACE_ENABLED``; both default on."""
    for raw in (os.environ.get("AIRFLOW__PIPETRACE__ENABLED"), _airflow_conf("pipetrace", "enabled"),
                os.environ.get("PIPETRACE_ENABLED")):
        if raw is not None and raw.strip().lower() in _FALSE:
            return False
    return True


@functools.cache
def native_tracing() -> bool:
    """True when Airflow emits its own ``dag_run.*``/``task_run.*``/``worker.*`` spans."""
    raw = _airflow_conf("traces", "otel_on")
    return raw is not None and raw.strip().lower() in {"1", "true", "yes", "on"}


def reset() -> None:
    """Forget the cached answers (tests and ``uninstrument``)."""
    enabled.cache_clear()
    native_tracing.cache_clear()
    xcom_links.cache_clear()


@functools.cache
def xcom_links() -> bool:
    """``AIRFLOW__PIPETRACE__XCOM_LINKS`` / ``[pipetrace] xcom_links`` (default on): link consumers to
    producers through one extra small XCom per producer; off saves those metadata-DB round trips."""
    raw = os.environ.get("AIRFLOW__PIPETRACE__XCOM_LINKS") or _airflow_conf("pipetrace", "xcom_links")
    return not (raw is not None and raw.strip().lower() in _FALSE)
