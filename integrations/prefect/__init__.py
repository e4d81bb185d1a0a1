"""pipetrace adapter for Prefect 3: every flow run is one trace.

``instrument()`` (idempotent, cheap) is called by ``pipetrace run`` when ``prefect`` is imported, or by
Prefect's own plugin hook (``PREFECT_PLUGINS_ENABLED=1``). Flow runs become ``run {flow}`` spans,
task-run attempts ``task {task}`` spans (current while the task body runs), ``.map()`` calls
``batch {task}`` spans, consumed results links of kind ``result``. See docs/prefect.md.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
from typing import Any

log = logging.getLogger("pipetrace.prefect")

_lock = threading.RLock()
_installed = False
_installing = False


def _is_server_process() -> bool:
    """The Prefect API server (``prefect server start``, the ephemeral server's uvicorn) runs no flows."""
    argv = " ".join(sys.argv[:4])
    return "uvicorn" in argv or ("prefect" in argv and " server " in f" {argv} ")


def instrument(tracer_provider: Any = None) -> bool:
    """Trace Prefect flow and task runs in this process. Returns True if active."""
    global _installed, _installing
    with _lock:
        if _installed or _installing:
            # re-entered while installing: installing imports prefect, whose plugin hook calls us again
            return True
        if _is_server_process():
            return False
        _installing = True
        try:
            import pipetrace
            from pipetrace.adapter import add_transform_once

            if tracer_provider is not None:
                from opentelemetry import trace

                trace.set_tracer_provider(tracer_provider)
            pipetrace.get_tracer()
            from . import hooks, links, secrets, telemetry

            hooks.install()
            secrets.install()
            add_transform_once(links.mark_result_links)
            atexit.unregister(telemetry.sweep_all)  # once, however often re-instrumented
            atexit.register(telemetry.sweep_all)
            _installed = True
            return True
        except Exception as exc:
            log.warning("pipetrace: could not instrument prefect: %r", exc)
            return False
        finally:
            _installing = False


def uninstrument() -> None:
    global _installed
    with _lock:
        if not _installed:
            return
        from . import hooks, secrets

        hooks.remove()
        secrets.remove()
        _installed = False


__all__ = ["instrument", "uninstrument"]
