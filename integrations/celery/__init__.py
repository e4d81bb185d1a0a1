"""Celery adapter: publish and task-attempt spans from Celery's signals, canvas batch spans, queue wait.

``instrument()`` connects the signal handlers and wraps ``group.apply_async``/``chord.run`` (Celery has
no canvas signals). A worker's main process closes ended workflows in the background from
``worker_ready`` (:mod:`pipetrace.adapter.message_runs`). Enabled with zero edits by
``pipetrace run -- celery -A app worker`` through the ``pipetrace.adapters`` entry point ``celery``.
"""

from __future__ import annotations

from typing import Any

from pipetrace.adapter import Instrumentor, Signals, Switch, message_runs
from pipetrace.adapter.messaging import on_publish_failed, set_provider

from . import canvas, interop, lost, publish, worker


def _signals() -> list[tuple[Any, Any]]:
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
        (signals.worker_process_shutdown, message_runs.flush),  # before a pool child exits: no span lost
        (signals.worker_shutdown, message_runs.worker_shutdown),
        (signals.worker_ready, message_runs.worker_ready),
        (signals.worker_init, lost.patch_worker),
        (signals.worker_init, worker.name_worker),
    ]


_hooks = Signals(_signals)


def _install() -> None:
    _hooks.connect()
    canvas.patches.apply()
    on_publish_failed(publish.publish_failed)
    interop.setup()


def _remove() -> None:
    _hooks.disconnect()
    canvas.patches.undo()
    lost.patches.undo()
    interop.teardown()
    on_publish_failed(None)


switch = Switch("celery", _install, _remove, provider=set_provider)
instrument = switch.instrument
"""Trace Celery in this process (idempotent; cheap: connects handlers, imports nothing heavy);
``tracer_provider``: the provider the Celery and kombu spans go to instead of pipetrace's own."""
uninstrument = switch.uninstrument
is_instrumented = switch.is_instrumented


class CeleryInstrumentor(Instrumentor):
    """OpenTelemetry-instrumentor style wrapper around :func:`instrument`/:func:`uninstrument`."""

    switch = switch


__all__ = ["CeleryInstrumentor", "instrument", "is_instrumented", "uninstrument"]
