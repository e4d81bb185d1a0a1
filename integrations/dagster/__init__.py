"""pipetrace adapter for Dagster: every run one trace, one live span per step attempt.

Zero-code: ``pipetrace run -- dagster dev ...`` / ``pipetrace run -- dagster job execute ...`` calls
:func:`instrument` in every Python process of the command when Dagster is imported. One line for
deployments whose launch command you don't control: ``defs = traced(Definitions(...))``.

Events are observed at ``DagsterInstance.handle_new_event``, the one funnel every event of every process
and instance type passes through (why this hook: docs/dagster.md); Dagster runs first, then the observer,
whose failure is swallowed. A run created in this process is also seen at ``RunDomain.create_run``, so its
first event needs no read of the run storage. Values read through ``EnvVar`` become known secrets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from pipetrace.adapter import Instrumentor, Switch, use_provider, warn_once_per
from pipetrace.adapter.patching import Patches

from .runinfo import CREATED

T = TypeVar("T")
log = logging.getLogger("pipetrace.dagster")
_translator: list[Any] = []  # the event observer of this process, while instrumented
patches = Patches("dagster")


def _install() -> None:
    from dagster._config import field_utils, source
    from dagster._core.instance import DagsterInstance

    from .events import EventTranslator

    translator = EventTranslator()
    patches.wrap(DagsterInstance, "handle_new_event", translator.observe)
    _translator[:] = [translator]
    try:  # runs created here (execute_in_process, materialize, `dagster job execute`): no run read at their start
        from dagster._core.instance.runs.run_domain import RunDomain
    except ImportError:  # another layout: each run's record is read from the instance
        pass
    else:
        patches.wrap(RunDomain, "create_run", _created)
    patches.secrets(source, "_ensure_env_variable")  # config {"env": ...} and EnvVar
    patches.secrets(field_utils.EnvVar, "get_value")  # EnvVar("X").get_value()


def _created(wrapped: Callable[..., Any], domain: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """After ``RunDomain.create_run``: keep the run, which its first event here would read back from storage."""
    run = wrapped(*args, **kwargs)
    try:
        CREATED.put(run.run_id, run)
    except Exception as exc:
        warn_once_per(log, "dagster-created", "pipetrace: Dagster run creation not seen: %r", exc)
    return run


def _remove() -> None:
    """Open step spans are ended."""
    patches.undo()
    while _translator:
        _translator.pop().clear()
    CREATED.clear()


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
