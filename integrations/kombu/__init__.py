"""kombu adapter: trace context through message headers, ``send``/``process`` spans, batch spans.

``instrument()`` wraps ``Producer.publish`` and ``Consumer.receive`` (kombu has no hooks for either);
``process_batch`` and ``consume_batches`` cover batch consumption. Enabled with zero edits by
``pipetrace run -- COMMAND`` through the ``pipetrace.adapters`` entry point ``kombu``.
"""

from __future__ import annotations

import os

from opentelemetry.trace import TracerProvider
from pipetrace.adapter import Instrumentor, Patches, Switch
from pipetrace.adapter.messaging import set_provider

from . import consumer, producer
from .batch import consume_batches, message_link, process_batch

_patches = Patches("kombu", [("kombu.messaging", "Producer", "publish", producer.traced_publish),
                    ("kombu.messaging", "Consumer", "receive", consumer.traced_receive)])


def _remove() -> None:
    _patches.undo()
    set_provider(None)


switch = Switch("kombu", _patches.apply, _remove, provider=set_provider)
uninstrument = switch.uninstrument
is_instrumented = switch.is_instrumented


def instrument(tracer_provider: TracerProvider | None = None, *, spans: bool | None = None) -> bool:
    """Trace kombu publishes and callback consumers in this process (idempotent, cheap).

    ``spans=False`` (or ``PIPETRACE_KOMBU_SPANS=propagation``) is propagation only: the trace context
    and publish time travel in the headers, a consumer callback runs in the producer's context, and no
    per-message span is made (batch spans from ``process_batch`` still are)."""
    if spans is None:
        spans = os.environ.get("PIPETRACE_KOMBU_SPANS", "all").strip().lower() != "propagation"
    producer.spans_enabled = consumer.spans_enabled = spans
    return switch.instrument(tracer_provider)


class KombuInstrumentor(Instrumentor):
    """OpenTelemetry-instrumentor style wrapper around :func:`instrument`/:func:`uninstrument`."""

    switch = switch


__all__ = ["KombuInstrumentor", "consume_batches", "instrument", "is_instrumented", "message_link",
           "process_batch", "uninstrument"]
