"""A Celery worker's main process closes the workflows that ended: it sweeps the store for runs whose
every message was handled (:mod:`pipetrace.adapter.message_runs`) on a background thread started when the
worker is ready, and once more at shutdown. Nothing of it runs on a task's path."""

from __future__ import annotations

import logging
from typing import Any

from pipetrace.adapter import message_runs
from pipetrace.util.ratelimit import warn_once_per

from . import worker

log = logging.getLogger("pipetrace.celery")


def worker_ready(**_: Any) -> None:
    try:
        message_runs.start_background()
    except Exception as exc:
        warn_once_per(log, "celery-runs-start", "pipetrace: Celery run closer not started: %r", exc)


def worker_shutdown(**kwargs: Any) -> None:
    """Close what ended before the worker goes, then flush (the run spans too)."""
    try:
        message_runs.stop_background()
    except Exception as exc:
        warn_once_per(log, "celery-runs-stop", "pipetrace: Celery run closer failed at shutdown: %r", exc)
    worker.flush(**kwargs)
