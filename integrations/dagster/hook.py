"""Installs the event observer on ``DagsterInstance.handle_new_event``.

Why there: it is the single funnel every Dagster event passes through, in every process (in-process
executor, the multiprocess orchestrator and each step subprocess, ``dagster dev`` run workers), with
every instance type (ephemeral, SQLite, PostgreSQL) and without any user configuration. A custom
event-log storage in ``dagster.yaml`` would see the same events only for persistent instances, not in
``execute_in_process``/``materialize``; job hooks (``@success_hook``) are per job and never see a step
start. The wrapper calls Dagster first and then observes; an observer failure is swallowed.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from pipetrace.util.ratelimit import warn_once_per

log = logging.getLogger("pipetrace.dagster")

Observer = Callable[[Any, Any], None]

_lock = threading.Lock()
_MARK = "__pipetrace_original__"


_saved: dict[str, Any] = {}


def install(observer: Observer) -> bool:
    """Wrap ``DagsterInstance.handle_new_event`` once; True if this call installed it."""
    from dagster._core.instance import DagsterInstance

    with _lock:
        original = DagsterInstance.handle_new_event
        if hasattr(original, _MARK):
            return False

        @functools.wraps(original)
        def handle_new_event(self: Any, event: Any, *args: Any, **kwargs: Any) -> None:
            original(self, event, *args, **kwargs)
            try:
                observer(self, event)
            except Exception as exc:
                warn_once_per(log, "dagster-observer", "pipetrace: Dagster event not traced: %r", exc)

        setattr(handle_new_event, _MARK, original)
        _saved["own"] = DagsterInstance.__dict__.get("handle_new_event")
        DagsterInstance.handle_new_event = handle_new_event  # type: ignore[method-assign]
        return True


def uninstall() -> bool:
    """Restore Dagster's own method; True if something was removed."""
    from dagster._core.instance import DagsterInstance

    with _lock:
        if not hasattr(DagsterInstance.handle_new_event, _MARK):
            return False
        own = _saved.pop("own", None)
        if own is not None:
            DagsterInstance.handle_new_event = own  # type: ignore[method-assign]
        else:
            del DagsterInstance.handle_new_event
        return True


def installed() -> bool:
    from dagster._core.instance import DagsterInstance

    return hasattr(DagsterInstance.handle_new_event, _MARK)
