"""``instrument()``/``uninstrument()`` of an adapter, in the style of OpenTelemetry's instrumentors:
idempotent, thread-safe, re-entrant (installing may import the orchestrator, whose plugin hook calls
``instrument()`` again) and never raising into the host — a failure is one warning and ``False``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..util.ratelimit import warn_once_per


class Switch:
    """The on/off state of one adapter in this process around its ``install``/``remove`` steps.

    ``provider``: what to do with a ``tracer_provider`` handed to :meth:`instrument` (each adapter
    documents whether it becomes the global provider or only the adapter's)."""

    def __init__(self, name: str, install: Callable[[], object], remove: Callable[[], object], *,
                 provider: Callable[[Any], object] | None = None) -> None:
        self.name = name
        self._install = install
        self._remove = remove
        self._provider = provider
        self._lock = threading.RLock()
        self._on = False
        self._busy = False
        self._log = logging.getLogger(f"pipetrace.{name}")

    def instrument(self, tracer_provider: Any = None) -> bool:
        """Turn the adapter on (again: a no-op); True if it is on."""
        with self._lock:
            if self._busy:  # re-entered while installing
                return True
            self._busy = True
            try:
                if tracer_provider is not None and self._provider is not None:
                    self._provider(tracer_provider)
                if not self._on:
                    self._install()
                    self._on = True
                return True
            except Exception as exc:
                warn_once_per(self._log, f"{self.name}-instrument", "pipetrace: could not instrument %s: %r",
                              self.name, exc)
                return False
            finally:
                self._busy = False

    def uninstrument(self) -> None:
        """Turn the adapter off (when off: a no-op)."""
        with self._lock:
            if not self._on:
                return
            self._on = False
            try:
                self._remove()
            except Exception as exc:
                warn_once_per(self._log, f"{self.name}-uninstrument", "pipetrace: could not uninstrument %s: %r",
                              self.name, exc)

    def is_instrumented(self) -> bool:
        return self._on


class Instrumentor:
    """OpenTelemetry-instrumentor style facade: ``XInstrumentor().instrument(tracer_provider=...)``."""

    switch: Switch

    def instrument(self, tracer_provider: Any = None, **_: object) -> None:
        self.switch.instrument(tracer_provider)

    def uninstrument(self, **_: object) -> None:
        self.switch.uninstrument()

    def is_instrumented(self) -> bool:
        return self.switch.is_instrumented()


class Signals:
    """An adapter's receivers of an orchestrator's signals (``connect``/``disconnect`` with a
    ``dispatch_uid``, as Celery's and Django's signals have), as one table connected and disconnected
    together. ``table()`` gives (signal, receiver) pairs; it is called only then, so building it may
    import the orchestrator."""

    def __init__(self, table: Callable[[], Sequence[tuple[Any, Callable[..., Any]]]]) -> None:
        self.table = table

    @staticmethod
    def _uid(signal: Any, receiver: Callable[..., Any]) -> str:
        return f"pipetrace.{receiver.__module__}.{receiver.__name__}.{signal.name}"

    def connect(self) -> None:
        for signal, receiver in self.table():
            signal.connect(receiver, weak=False, dispatch_uid=self._uid(signal, receiver))

    def disconnect(self) -> None:
        for signal, receiver in self.table():
            signal.disconnect(receiver, dispatch_uid=self._uid(signal, receiver))
