"""pipetrace adapter for Dagster: every run one trace, one live span per step attempt.

Zero-code: ``pipetrace run -- dagster dev ...`` / ``pipetrace run -- dagster job execute ...`` calls
:func:`instrument` in every Python process of the command when Dagster is imported. One line for
deployments whose launch command you don't control: ``defs = traced(Definitions(...))``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, TypeVar

from pipetrace.util.ratelimit import warn_once_per

log = logging.getLogger("pipetrace.dagster")

_lock = threading.Lock()
_translator: Any = None

T = TypeVar("T")


def instrument(tracer_provider: Any = None) -> bool:
    """Start tracing Dagster in this process (idempotent, cheap). True if tracing is on.

    ``tracer_provider``: an SDK ``TracerProvider`` to use instead of pipetrace's own; pipetrace adds its
    processing chain to it (it must be set before pipetrace first configures in this process)."""
    global _translator
    try:
        if tracer_provider is not None:
            _use_provider(tracer_provider)
        from . import hook, secrets
        from .events import EventTranslator

        with _lock:
            if _translator is None:
                _translator = EventTranslator()
            hook.install(_translator)
            secrets.install()
        return True
    except Exception as exc:
        warn_once_per(log, "dagster-instrument", "pipetrace: could not instrument Dagster: %r", exc)
        return False


def uninstrument() -> None:
    """Stop tracing Dagster in this process; open step spans are ended."""
    global _translator
    try:
        from . import hook, secrets

        with _lock:
            hook.uninstall()
            secrets.remove()
            if _translator is not None:
                _translator.clear()
            _translator = None
    except Exception as exc:
        warn_once_per(log, "dagster-uninstrument", "pipetrace: could not uninstrument Dagster: %r", exc)


def is_instrumented() -> bool:
    try:
        from . import hook

        return hook.installed()
    except Exception:
        return False


def traced(defs: T) -> T:
    """``defs = traced(Definitions(...))``: instrument every process that loads this code location
    (code server, run worker, each step subprocess), then return ``defs`` unchanged."""
    instrument()
    return defs


def _use_provider(provider: Any) -> None:
    from opentelemetry import trace
    from pipetrace.processing import runtime

    if trace.get_tracer_provider() is not provider:
        trace.set_tracer_provider(provider)
    if not runtime.is_configured() or runtime.provider() is not provider:
        runtime.configure()


class DagsterInstrumentor:
    """OpenTelemetry-style instrumentor facade."""

    def instrument(self, **kwargs: Any) -> None:
        instrument(kwargs.get("tracer_provider"))

    def uninstrument(self, **kwargs: Any) -> None:
        uninstrument()


__all__ = ["DagsterInstrumentor", "instrument", "is_instrumented", "traced", "uninstrument"]
