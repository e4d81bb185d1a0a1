"""The task-attempt lifecycle every adapter uses: start, current, links, end — and the one bounded
registry of open attempts behind it.

An attempt's span is started by the adapter (through :mod:`.spans`), then handed to
:meth:`Attempts.start`, which makes it current and keeps it under the adapter's key (run, task, try…)
until :meth:`Attempts.end`. One policy for every adapter: at most ``bound`` open attempts per registry
(10,000); a start for a key that is still open, or an attempt evicted because the registry is full,
ends the old span with result ``error`` instead of leaking it. Thread-safe: single dict operations are
atomic, so the per-task path takes no lock; only eviction and group sweeps do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

from opentelemetry import context as otel_context
from opentelemetry.trace import Link, Span

from .. import attributes as A
from ..machinery.current import attach_span
from ..spans import end_task_span

MAX_OPEN = 10_000

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class OpenAttempts(Generic[K, V]):
    """Insertion-ordered map with a size bound; evicted entries are handed back to be closed."""

    def __init__(self, bound: int = MAX_OPEN) -> None:
        self._items: dict[K, V] = {}
        self._lock = threading.Lock()
        self.bound = bound

    def replace(self, key: K, value: V) -> tuple[V | None, Sequence[V]]:
        """Keep ``value`` under ``key`` (a key put again moves to the end); returns the entry it replaced
        (None if the key was not open) and the oldest entries evicted to stay within the bound."""
        items = self._items
        replaced = items.pop(key, None)
        items[key] = value  # one dict operation each: atomic under the GIL, no lock on the common path
        return replaced, (() if len(items) <= self.bound else self.evict())

    def put(self, key: K, value: V) -> list[V]:
        """:meth:`replace`, the replaced entry dropped; returns what was evicted."""
        return list(self.replace(key, value)[1])

    def evict(self) -> list[V]:
        """Remove the oldest entries beyond the bound; returns them."""
        items = self._items
        evicted: list[V] = []
        with self._lock:  # only eviction walks the dict
            while len(items) > self.bound:
                try:
                    evicted.append(items.pop(next(iter(items))))
                except (StopIteration, KeyError, RuntimeError):  # another thread changed it meanwhile
                    break
        return evicted

    def pop(self, key: K) -> V | None:
        return self._items.pop(key, None)

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def pop_where(self, keep: Callable[[K], bool]) -> list[V]:
        """Remove and return every value whose key matches (a run's attempts when the run ends)."""
        with self._lock:
            keys = [k for k in list(self._items) if keep(k)]
            return [v for v in (self._items.pop(k, None) for k in keys) if v is not None]

    def clear(self) -> list[V]:
        with self._lock:
            values = list(self._items.values())
            self._items.clear()
        return values

    def __len__(self) -> int:
        return len(self._items)


def activate(span: Span) -> object:
    """Make ``span`` the current span; returns the token :func:`deactivate` takes."""
    return attach_span(span)


def deactivate(token: object) -> bool:
    """Restore the context from before :func:`activate`. Quiet if the orchestrator moved us to another
    context meanwhile (a step resumed in another thread, a task body that left a context attached):
    returns False then, for a caller that restores more of that context."""
    if token is None:
        return True
    try:
        try:
            token.var.reset(token)  # type: ignore[attr-defined]  # what attach() returns: a ContextVar token
        except AttributeError:  # another runtime context's token
            otel_context.detach(token)  # type: ignore[arg-type]
    except (ValueError, RuntimeError):
        return False
    return True


def close_stale(span: Span) -> None:
    """End the span of an attempt that never got its end (restarted key, evicted): result ``error``."""
    end_task_span(span, result=A.RESULT_ERROR)


class Attempt:
    """One open attempt: its span, the token of its activation and the adapter's own data."""

    __slots__ = ("span", "token", "try_number", "data")

    def __init__(self, span: Span, token: object = None, try_number: int = 1, data: Any = None) -> None:
        self.span = span
        self.token = token
        self.try_number = try_number
        self.data = data

    def close(self) -> None:
        """Restore the context from before the attempt's activation (it leaves the registry)."""
        deactivate(self.token)


A_ = TypeVar("A_", bound=Attempt)


class Attempts(Generic[K]):
    """The open attempts of one adapter in this process (see the module doc for the policy)."""

    def __init__(self, bound: int = MAX_OPEN) -> None:
        self.open: OpenAttempts[K, Attempt] = OpenAttempts(bound)

    def start(self, key: K, span: Span, *, try_number: int = 1, data: Any = None, current: bool = True) -> Attempt:
        """Keep ``span`` as the attempt ``key`` (current from now on unless ``current`` is False)."""
        return self.add(key, Attempt(span, activate(span) if current else None, try_number, data))

    def add(self, key: K, attempt: A_) -> A_:
        """Keep an attempt made by the adapter (an :class:`Attempt` subclass with its own data, one object
        per attempt on a per-message path); its span is already current if it is to be."""
        stale, evicted = self.open.replace(key, attempt)
        if stale is not None:
            close_stale(stale.span)
        if evicted:
            for old in evicted:
                close_stale(old.span)
        return attempt

    def get(self, key: K) -> Attempt | None:
        return self.open.get(key)

    def current(self, key: K) -> Span | None:
        """The open attempt's span, or None."""
        attempt = self.open.get(key)
        return attempt.span if attempt is not None else None

    def add_links(self, key: K, links: list[Link | None]) -> int:
        """Links of the open attempt (data it consumed); how many were added."""
        span = self.current(key)
        if span is None or not span.is_recording():
            return 0
        added = 0
        for lk in links:
            if lk is not None:
                span.add_link(lk.context, lk.attributes)
                added += 1
        return added

    def pop(self, key: K) -> Attempt | None:
        """Remove the attempt and restore the context from before it; the caller ends its span."""
        attempt = self.open.pop(key)
        if attempt is not None:
            attempt.close()
        return attempt

    def end(self, key: K, *, result: str | None = None, error: BaseException | None = None,
            end_time: Any = None) -> Attempt | None:
        """End the attempt with its result (success unless told or failed); None if it was not open."""
        attempt = self.pop(key)
        if attempt is not None:
            end_task_span(attempt.span, result=result, error=error, end_time=end_time)
        return attempt

    def close_all(self) -> None:
        """End every open attempt as an error (the adapter is switched off)."""
        for attempt in self.open.clear():
            close_stale(attempt.span)

    def __len__(self) -> int:
        return len(self.open)
