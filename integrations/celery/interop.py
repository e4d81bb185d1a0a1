"""Coexistence with ``opentelemetry-instrumentation-celery`` in one process.

Both write the same W3C ``traceparent`` header, so across processes either side continues the other's
trace. Inside one process, two sets of signal handlers would emit two spans per publish and per task.
``PIPETRACE_CELERY_OTEL`` picks who emits them:

* ``replace`` (default): pipetrace's spans (they carry queue wait, tries, canvas batches and chord
  links); the OTel instrumentor is uninstrumented if it is active, and a later
  ``CeleryInstrumentor().instrument()`` is skipped with an info log.
* ``defer``: the OTel instrumentor's spans; pipetrace's Celery handlers stand aside while it is active.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from typing import Any

log = logging.getLogger("pipetrace.celery")

ENV = "PIPETRACE_CELERY_OTEL"
MODULE = "opentelemetry.instrumentation.celery"
_patched: dict[str, Any] = {}


def mode() -> str:
    value = os.environ.get(ENV, "replace").strip().lower()
    return value if value in ("replace", "defer") else "replace"


def _instrumentor_class() -> Any:
    module = sys.modules.get(MODULE)
    return getattr(module, "CeleryInstrumentor", None) if module is not None else None


def otel_active() -> bool:
    cls = _instrumentor_class()
    instance = getattr(cls, "_instance", None) if cls is not None else None
    return bool(getattr(instance, "_is_instrumented_by_opentelemetry", False))


def deferring() -> bool:
    """True when pipetrace's Celery spans must stand aside for the OTel instrumentor's."""
    return _mode == "defer" and otel_active()


_mode = mode()
may_defer = _mode == "defer"
"""Whether :func:`deferring` can ever be true in this process: the per-message handlers read this flag
and call :func:`deferring` only when it is set (in ``replace`` mode, the default, no call per message)."""


def setup() -> None:
    """In ``replace`` mode, switch the OTel Celery instrumentor off now and whenever it is enabled."""
    global _mode, may_defer
    _mode = mode()
    may_defer = _mode == "defer"
    if _mode != "replace" or "instrument" in _patched:
        return
    try:
        if MODULE not in sys.modules and importlib.util.find_spec(MODULE) is None:
            return
    except (ImportError, ValueError):
        return
    try:
        module = __import__(MODULE, fromlist=["CeleryInstrumentor"])
        cls = module.CeleryInstrumentor
        if otel_active():
            cls().uninstrument()
            log.info("pipetrace: opentelemetry-instrumentation-celery switched off (pipetrace traces Celery "
                     "with the same W3C headers; set %s=defer to keep its spans instead)", ENV)
        original = cls._instrument

        def _instrument(self: Any, **kwargs: Any) -> None:
            if mode() == "defer":
                original(self, **kwargs)
                return
            log.info("pipetrace: skipping opentelemetry-instrumentation-celery's handlers (pipetrace traces "
                     "Celery in this process; set %s=defer to keep them)", ENV)

        _patched["instrument"] = (cls, original)
        cls._instrument = _instrument
    except Exception as exc:
        log.debug("pipetrace: could not coordinate with %s: %r", MODULE, exc)


def teardown() -> None:
    entry = _patched.pop("instrument", None)
    if entry is not None:
        cls, original = entry
        cls._instrument = original
