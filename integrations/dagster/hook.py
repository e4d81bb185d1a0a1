"""Installs the event observer on ``DagsterInstance.handle_new_event``.

Why there: it is the single funnel every Dagster event passes through, in every process (in-process
executor, the multiprocess orchestrator and each step subprocess, ``dagster dev`` run workers), with
every instance type (ephemeral, SQLite, PostgreSQL) and without any user configuration. A custom
event-log storage in ``dagster.yaml`` would see the same events only for persistent instances, not in
``execute_in_process``/``materialize``; job hooks (``@success_hook``) are per job and never see a step
start. The wrapper calls Dagster first and then observes; an observer failure is swallowed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pipetrace.adapter import is_wrapped, unwrap, warn_once_per, wrap

log = logging.getLogger("pipetrace.dagster")

Observer = Callable[[Any, Any], None]


def install(observer: Observer) -> bool:
    """Wrap ``DagsterInstance.handle_new_event`` once (``wrapt``); True if this call installed it."""
    from dagster._core.instance import DagsterInstance

    def handle_new_event(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                         kwargs: dict[str, Any]) -> None:
        wrapped(*args, **kwargs)
        try:
            observer(instance, args[0] if args else kwargs["event"])
        except Exception as exc:
            warn_once_per(log, "dagster-observer", "pipetrace: Dagster event not traced: %r", exc)

    return wrap(DagsterInstance, "handle_new_event", handle_new_event)


def uninstall() -> bool:
    """Restore Dagster's own method; True if something was removed."""
    from dagster._core.instance import DagsterInstance

    return unwrap(DagsterInstance, "handle_new_event")


def installed() -> bool:
    from dagster._core.instance import DagsterInstance

    return is_wrapped(DagsterInstance, "handle_new_event")
