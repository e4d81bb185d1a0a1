"""pipetrace adapter for Dagster: every run one trace, one live span per step attempt.

Zero-code: ``pipetrace run -- dagster dev ...`` / ``pipetrace run -- dagster job execute ...`` calls
:func:`instrument` in every Python process of the command when Dagster is imported. One line for
deployments whose launch command you don't control: ``defs = traced(Definitions(...))``.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pipetrace.adapter import Instrumentor, Switch, use_provider

T = TypeVar("T")

_translator: list[Any] = []  # the event observer of this process, while instrumented


def _install() -> None:
    from . import hook, secrets
    from .events import EventTranslator

    translator = EventTranslator()
    hook.install(translator)
    _translator[:] = [translator]
    secrets.install()


def _remove() -> None:
    """Open step spans are ended."""
    from . import hook, secrets

    hook.uninstall()
    secrets.remove()
    for translator in _translator:
        translator.clear()
    _translator.clear()


switch = Switch("dagster", _install, _remove, provider=use_provider)
instrument = switch.instrument
"""Start tracing Dagster in this process (idempotent, cheap). True if tracing is on. ``tracer_provider``:
an SDK ``TracerProvider`` to use instead of pipetrace's own; pipetrace adds its processing chain to it (it
must be set before pipetrace first configures in this process)."""
uninstrument = switch.uninstrument
is_instrumented = switch.is_instrumented


def traced(defs: T) -> T:
    """``defs = traced(Definitions(...))``: instrument every process that loads this code location
    (code server, run worker, each step subprocess), then return ``defs`` unchanged."""
    instrument()
    return defs


class DagsterInstrumentor(Instrumentor):
    """OpenTelemetry-style instrumentor facade."""

    switch = switch


__all__ = ["DagsterInstrumentor", "instrument", "is_instrumented", "traced", "uninstrument"]
