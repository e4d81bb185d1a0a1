"""A Celery worker's main process closes the workflows that ended: it sweeps the store for runs whose
every message was handled (:mod:`pipetrace.adapter.message_runs`) on a background thread started when the
worker is ready, and once more at shutdown. Nothing of it runs on a task's path."""

from __future__ import annotations

import logging
from typing import Any

from pipetrace.adapter import guarded, message_runs

from . import worker

log = logging.getLogger("pipetrace.celery")


@guarded(log, "celery-runs-start", "Celery run closer not started")
def worker_ready(**_: Any) -> None:
    message_runs.start_background()


@guarded(log, "celery-runs-stop", "Celery run closer failed at shutdown")
def _stop_closer() -> None:
    message_runs.stop_background()


def worker_shutdown(**kwargs: Any) -> None:
    """Close what ended before the worker goes, then flush (the run spans too)."""
    _stop_closer()
    worker.flush(**kwargs)
