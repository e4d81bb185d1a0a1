"""pipetrace adapter for Prefect 3: every flow run is one trace.

``instrument()`` (idempotent, cheap) is called by ``pipetrace run`` when ``prefect`` is imported, or by
Prefect's own plugin hook (``PREFECT_PLUGINS_ENABLED=1``). Flow runs become ``run {flow}`` spans,
task-run attempts ``task {task}`` spans (current while the task body runs), ``.map()`` calls
``batch {task}`` spans, consumed results links of kind ``result``. See docs/prefect.md.
"""

from __future__ import annotations

import atexit
import sys
from typing import Any

from pipetrace.adapter import Switch, add_transform_once, get_tracer, use_provider


def _is_server_process() -> bool:
    """The Prefect API server (``prefect server start``, the ephemeral server's uvicorn) runs no flows."""
    argv = " ".join(sys.argv[:4])
    return "uvicorn" in argv or ("prefect" in argv and " server " in f" {argv} ")


def _install() -> None:
    get_tracer()
    from . import hooks, links, telemetry  # importing prefect re-enters instrument(): a no-op

    hooks.install()
    add_transform_once(links.mark_result_links)
    atexit.unregister(telemetry.sweep_all)  # once, however often re-instrumented
    atexit.register(telemetry.sweep_all)


def _remove() -> None:
    from .hooks import patches

    patches.undo()


switch = Switch("prefect", _install, _remove, provider=use_provider)
uninstrument = switch.uninstrument
is_instrumented = switch.is_instrumented


def instrument(tracer_provider: Any = None) -> bool:
    """Trace Prefect flow and task runs in this process (``tracer_provider``: becomes the global one and
    pipetrace's). Returns True if active."""
    if _is_server_process():
        return False
    return switch.instrument(tracer_provider)


def __getattr__(name: str) -> Any:
    if name == "_installed":  # the flag this module kept before the Switch (read by activation probes)
        return switch.is_instrumented()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["instrument", "is_instrumented", "uninstrument"]
