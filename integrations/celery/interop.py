"""Coexistence with ``opentelemetry-instrumentation-celery`` in one process, picked by
``PIPETRACE_CELERY_OTEL`` (:class:`~pipetrace.adapter.messaging.Coexistence`): ``replace`` (default)
keeps pipetrace's spans, which carry queue wait, tries, canvas batches and chord links; ``defer`` keeps
the instrumentor's. Per-message handlers read ``coexistence.may_defer`` before calling :func:`deferring`."""

from __future__ import annotations

import logging
from typing import Any

from pipetrace.adapter.messaging import Coexistence

ENV = "PIPETRACE_CELERY_OTEL"
coexistence = Coexistence("opentelemetry.instrumentation.celery", "CeleryInstrumentor", ENV,
                          logging.getLogger("pipetrace.celery"))
otel_active, deferring = coexistence.otel_active, coexistence.deferring
setup, teardown = coexistence.setup, coexistence.teardown


def __getattr__(name: str) -> Any:
    if name == "may_defer":  # the mode's, as setup() last read it (no module-global copy to keep in step)
        return coexistence.may_defer
    raise AttributeError(name)
