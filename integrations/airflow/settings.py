"""The adapter's switches, read once per process (they only change on restart; the hooks run for every
task), the run-time on/off of ``instrument``/``uninstrument``, and the span filter that follows them."""

from __future__ import annotations

import functools
import os
import threading

from pipetrace import get_tracer
from pipetrace.adapter import drop_scopes

_OFF, _ON = {"0", "false", "no", "off"}, {"1", "true", "yes", "on"}
_lock = threading.Lock()
_active = True


def _airflow_conf(section: str, key: str) -> str | None:
    """A value from Airflow's configuration (the task SDK's in a worker, core's elsewhere)."""
    for module in ("airflow.sdk.configuration", "airflow.configuration"):
        try:
            value = __import__(module, fromlist=["conf"]).conf.get(section, key, fallback=None)
            return None if value is None else str(value)
        except Exception:  # noqa: S112 - try the next configuration flavour
            continue
    return None


def _is(raw: str | None, words: set[str]) -> bool:
    return raw is not None and raw.strip().lower() in words


@functools.cache
def enabled() -> bool:
    """``AIRFLOW__PIPETRACE__ENABLED`` / ``[pipetrace] enabled`` and ``PIPETRACE_ENABLED``; both default on."""
    raws = (os.environ.get("AIRFLOW__PIPETRACE__ENABLED"), _airflow_conf("pipetrace", "enabled"),
            os.environ.get("PIPETRACE_ENABLED"))
    return not any(_is(raw, _OFF) for raw in raws)


@functools.cache
def native_tracing() -> bool:
    """True when Airflow emits its own ``dag_run.*``/``task_run.*``/``worker.*`` spans (``[traces] otel_on``)."""
    return _is(_airflow_conf("traces", "otel_on"), _ON)


@functools.cache
def xcom_links() -> bool:
    """``AIRFLOW__PIPETRACE__XCOM_LINKS`` / ``[pipetrace] xcom_links`` (default on): link consumers to
    producers through one extra small XCom per producer; off saves those metadata-DB round trips."""
    return not _is(os.environ.get("AIRFLOW__PIPETRACE__XCOM_LINKS") or _airflow_conf("pipetrace", "xcom_links"), _OFF)


def reset() -> None:
    """Forget the cached answers (tests and ``uninstrument``)."""
    for cached in (enabled, native_tracing, xcom_links):
        cached.cache_clear()


def active() -> bool:
    return _active and enabled()


def set_active(value: bool) -> None:
    global _active
    _active = value


def unasked_scope(name: str) -> bool:
    """Without ``[traces] otel_on``, Airflow's own tracers (``dag_run.*``, ``worker.*``, ``listener.*``)
    would make spans in our provider once it is global; they are not asked for."""
    return name.startswith("airflow.") and not native_tracing()


def install_filter() -> None:
    """Drop Airflow's own spans unless asked for (idempotent). With native tracing, join Airflow's provider
    now, so the store also gets Airflow's spans made before any of ours (the scheduler's ``dag_run.*``)."""
    with _lock:
        drop_scopes(unasked_scope)
    if native_tracing():
        get_tracer()
