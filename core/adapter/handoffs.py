"""Data hand-offs (XCom, results, outputs) as span links from a consumer's attempt to its producer's.

Two halves every orchestrator with a data hand-off needs; what a read names and how its producer's span
is found stay in the adapter:

* :class:`Producers` — the producer's span context remembered under the key of what it made (bounded,
  the latest attempt wins), so a consumer in the same process links without asking the orchestrator;
  :func:`traceparent` is the value a producer stores with its data for consumers in other processes.
* :class:`Reads` — what one consumer read: kept until its attempt span starts (reads made while its
  inputs were resolved or its templates rendered), linked at once while it runs; each producer once.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext

from ..carriers import inject_span_context
from ..machinery import DeferredSpan
from ..util.ratelimit import warn_once_per

log = logging.getLogger("pipetrace.adapter")

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")

Target = tuple[Hashable, Callable[[], "Link | None"]]
"""One producer a read names: its key (a producer is linked once per consumer) and how to make its link
(called only for a producer not linked yet: finding it may cost the orchestrator a query)."""


def traceparent(span: Span) -> str | None:
    """The W3C ``traceparent`` of ``span``, to store with the data it produced; None if it has none."""
    sc = span.get_span_context()
    return inject_span_context({}, sc, context=Context()).get("traceparent") if sc.is_valid else None


class Producers(Generic[K]):
    """Span contexts of the producers seen in this process, by the key of what they made (LRU, bounded)."""

    def __init__(self, bound: int = 50_000) -> None:
        self._spans: OrderedDict[K, SpanContext] = OrderedDict()
        self._lock = threading.Lock()
        self.bound = bound

    def remember(self, key: K, span: Span) -> None:
        """The attempt that produces ``key`` started (a later attempt replaces an earlier one)."""
        sc = span.get_span_context()
        if not sc.is_valid:
            return
        with self._lock:
            self._spans[key] = sc
            self._spans.move_to_end(key)
            if len(self._spans) > self.bound:
                self._spans.popitem(last=False)

    def recall(self, key: K) -> SpanContext | None:
        with self._lock:
            return self._spans.get(key)

    def __len__(self) -> int:
        return len(self._spans)


class Reads(Generic[R]):
    """The reads of the one consumer attempt running in this process (see the module doc).

    Call order: :meth:`note` any time; :meth:`begin` right before the consumer's span starts (it returns
    the links of the reads so far, to start the span with); :meth:`attach` once it started; :meth:`finish`
    when it ends."""

    def __init__(self, bound: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._pending: list[R] = []
        self._targets: Callable[[R], Iterable[Target]] | None = None
        self._span: Span | None = None
        self._linked: set[Hashable] = set()
        self.bound = bound

    def note(self, read: R) -> None:
        """A read: a link of the running consumer's span, or kept (up to ``bound``) until it starts."""
        with self._lock:
            span, targets = self._span, self._targets
            if span is None or targets is None:
                if len(self._pending) < self.bound:
                    self._pending.append(read)
                return
        deferred = type(span) is DeferredSpan  # (the link made here is its own: kept as it is, not rebuilt)
        for lk in self._links(targets, [read]):
            if deferred:
                span.keep_link(lk)  # type: ignore[attr-defined]
            else:
                span.add_link(lk.context, lk.attributes)

    def begin(self, targets: Callable[[R], Iterable[Target]]) -> list[Link]:
        """Links of the reads kept so far; ``targets`` resolves this consumer's reads from now on."""
        with self._lock:
            reads, self._pending = self._pending, []
            self._targets, self._span, self._linked = targets, None, set()
        return self._links(targets, reads)

    def attach(self, span: Span) -> None:
        with self._lock:
            self._span = span

    def finish(self) -> None:
        with self._lock:
            self._pending, self._targets, self._span, self._linked = [], None, None, set()

    def _links(self, targets: Callable[[R], Iterable[Target]], reads: list[R]) -> list[Link]:
        out: list[Link] = []
        try:
            for read in reads:
                for key, make in targets(read):
                    with self._lock:
                        if key in self._linked:
                            continue
                        self._linked.add(key)
                    lk = make()
                    if lk is not None:
                        out.append(lk)
        except Exception as exc:
            warn_once_per(log, "adapter-handoff", "pipetrace: could not link a data hand-off: %r", exc)
        return out


__all__ = ["Producers", "Reads", "Target", "traceparent"]
