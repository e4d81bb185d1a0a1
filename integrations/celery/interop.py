"""Coexistence with ``opentelemetry-instrumentation-celery`` in one process, picked by
``PIPETRACE_CELERY_OTEL`` (:class:`~pipetrace.adapter.messaging.Coexistence`): ``replace`` (default)
keeps pipetrace's spans, which carry queue wait, tries, canvas batches and chord links; ``defer`` keeps
the instrumentor's."""

from __future__ import annotations

import logging

from pipetrace.adapter.messaging import Coexistence

ENV = "PIPETRACE_CELERY_OTEL"
coexistence = Coexistence("opentelemetry.instrumentation.celery", "CeleryInstrumentor", ENV,
                          logging.getLogger("pipetrace.celery"))
otel_active = coexistence.otel_active
deferring = coexistence.deferring
teardown = coexistence.teardown
may_defer = coexistence.may_defer
"""Whether :func:`deferring` can ever be true: the per-message handlers call it only when this is set."""


def setup() -> None:
    global may_defer
    coexistence.setup()
    may_defer = coexistence.may_defer
