"""Celery adapter: publish and task-attempt spans from Celery's signals, canvas batch spans, queue wait.

``instrument()`` connects the signal handlers (``before/after_task_publish``, ``task_prerun/postrun/
failure/retry/revoked/rejected/unknown``, ``worker_process_init/shutdown``, ``worker_init``, and
``worker_ready``/``worker_shutdown`` for the run closer) and wraps ``group.apply_async``/``chord.run``
(no canvas signals exist). Enabled with zero edits by
``pipetrace run -- celery -A app worker`` through the ``pipetrace.adapters`` entry point ``celery``.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry.trace import TracerProvider
from pipetrace.adapter.messaging import on_publish_failed, set_provider

from . import canvas, interop, lost, publish, runs, worker

_lock = threading.Lock()
_enabled = False


def _connections() -> list[tuple[Any, Any]]:
    from celery import signals

    return [
        (signals.before_task_publish, publish.before_publish),
        (signals.after_task_publish, publish.after_publish),
        (signals.task_prerun, worker.task_prerun),
        (signals.task_failure, worker.task_failure),
        (signals.task_retry, worker.task_retry),
        (signals.task_postrun, worker.task_postrun),
        (signals.task_revoked, worker.task_revoked),
        (signals.task_rejected, worker.task_rejected),
        (signals.task_unknown, worker.task_rejected),
        (signals.worker_process_init, worker.process_init),
        (signals.worker_process_shutdown, worker.flush),
        (signals.worker_shutdown, runs.worker_shutdown),
        (signals.worker_ready, runs.worker_ready),
        (signals.worker_init, lost.patch_worker),
        (signals.worker_init, worker.name_worker),
    ]


def instrument(tracer_provider: TracerProvider | None = None) -> None:
    """Trace Celery in this process (idempotent; cheap: connects handlers, imports nothing heavy)."""
    global _enabled
    with _lock:
        if tracer_provider is not None:
            set_provider(tracer_provider)
        if _enabled:
            return
        for signal, handler in _connections():
            signal.connect(handler, weak=False, dispatch_uid=f"pipetrace.{handler.__module__}.{handler.__name__}"
                           f".{signal.name}")
        canvas.patch()
        on_publish_failed(publish.publish_failed)
        interop.setup()
        _enabled = True


def uninstrument() -> None:
    global _enabled
    with _lock:
        for signal, handler in _connections():
            signal.disconnect(handler, dispatch_uid=f"pipetrace.{handler.__module__}.{handler.__name__}"
                              f".{signal.name}")
        canvas.unpatch()
        lost.unpatch()
        interop.teardown()
        on_publish_failed(None)
        _enabled = False


def is_instrumented() -> bool:
    return _enabled


class CeleryInstrumentor:
    """OpenTelemetry-instrumentor style wrapper around :func:`instrument`/:func:`uninstrument`."""

    def instrument(self, tracer_provider: TracerProvider | None = None, **_: object) -> None:
        instrument(tracer_provider)

    def uninstrument(self, **_: object) -> None:
        uninstrument()


__all__ = ["CeleryInstrumentor", "instrument", "is_instrumented", "uninstrument"]
