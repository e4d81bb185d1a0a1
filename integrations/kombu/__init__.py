"""kombu adapter: trace context through message headers, ``send``/``process`` spans, batch spans.

``instrument()`` wraps ``Producer.publish`` and ``Consumer.receive`` (kombu has no hooks for either);
``process_batch`` and ``consume_batches`` cover batch consumption. Enabled with zero edits by
``pipetrace run -- COMMAND`` through the ``pipetrace.adapters`` entry point ``kombu``.
"""

from __future__ import annotations

import os
import threading

from opentelemetry.trace import TracerProvider
from pipetrace.adapter.messaging import set_provider

from . import consumer, producer
from .batch import consume_batches, message_link, process_batch

_lock = threading.Lock()
_enabled = False


def instrument(tracer_provider: TracerProvider | None = None, *, spans: bool | None = None) -> None:
    """Trace kombu publishes and callback consumers in this process (idempotent, cheap).

    ``spans=False`` (or ``PIPETRACE_KOMBU_SPANS=propagation``) is propagation only: the trace context
    and publish time travel in the headers, a consumer callback runs in the producer's context, and no
    per-message span is made (batch spans from ``process_batch`` still are)."""
    global _enabled
    if spans is None:
        spans = os.environ.get("PIPETRACE_KOMBU_SPANS", "all").strip().lower() != "propagation"
    producer.spans_enabled = consumer.spans_enabled = spans
    with _lock:
        if tracer_provider is not None:
            set_provider(tracer_provider)
        if _enabled:
            return
        producer.patch()
        consumer.patch()
        _enabled = True


def uninstrument() -> None:
    global _enabled
    with _lock:
        producer.unpatch()
        consumer.unpatch()
        set_provider(None)
        _enabled = False


def is_instrumented() -> bool:
    return _enabled


class KombuInstrumentor:
    """OpenTelemetry-instrumentor style wrapper around :func:`instrument`/:func:`uninstrument`."""

    def instrument(self, tracer_provider: TracerProvider | None = None, **_: object) -> None:
        instrument(tracer_provider)

    def uninstrument(self, **_: object) -> None:
        uninstrument()


__all__ = ["KombuInstrumentor", "consume_batches", "instrument", "is_instrumented", "message_link",
           "process_batch", "uninstrument"]
