"""Process-wide on/off state of the adapter (``instrument``/``uninstrument``) and its span filter."""

from __future__ import annotations

import threading
from typing import Any

from pipetrace.adapter import add_transform_once

from .settings import enabled, native_tracing

_lock = threading.Lock()
_active = True


def active() -> bool:
    return _active and enabled()


def set_active(value: bool) -> None:
    global _active
    _active = value


def drop_airflow_native_spans(span: Any) -> Any:
    """Span transform: without ``[traces] otel_on``, Airflow's own tracer calls (``dag_run.*``,
    ``worker.*``, ``listener.*``) would land in our provider once it is global; they are not asked for."""
    scope = getattr(span, "instrumentation_scope", None)
    name = getattr(scope, "name", "") or ""
    if name.startswith("airflow.") and not native_tracing():
        return None
    return span


def install_filter() -> None:
    """Add the transform once per process (idempotent)."""
    with _lock:
        add_transform_once(drop_airflow_native_spans)
    if native_tracing():
        # Join Airflow's tracer provider now, so the store also receives Airflow's own spans made in
        # this process before any pipetrace span (the scheduler's dag_run.* span, for one).
        from pipetrace import get_tracer

        get_tracer()
