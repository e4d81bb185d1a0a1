"""pipetrace for Apache Airflow 3.3: every DAG run one trace, with zero DAG edits.

Installed, the ``airflow.plugins`` entry point (:class:`~.plugin.PipetracePlugin`) registers the listener
in every Airflow process; :func:`instrument`/:func:`uninstrument` switch it on and off at run time
(idempotent; ``pipetrace run`` calls :func:`instrument` when ``airflow`` is imported).
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

from . import settings, xcom

__all__ = ["instrument", "uninstrument", "is_instrumented"]


def instrument(tracer_provider: Any = None) -> None:
    """Turn the adapter on in this process; ``tracer_provider`` becomes the global one if none is set yet."""
    if tracer_provider is not None and type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider":
        trace.set_tracer_provider(tracer_provider)
    settings.install_filter()
    xcom.install()
    settings.set_active(True)


def uninstrument() -> None:
    """Turn the adapter off: hooks stay registered with Airflow but do nothing."""
    settings.set_active(False)


def is_instrumented() -> bool:
    return settings.active()
