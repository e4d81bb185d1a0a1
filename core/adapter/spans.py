"""Every way an adapter makes a span, in one place: the adapters call these, never the span machinery.

The machinery offers several strategies of one idea (a span whose SDK record is made as late as
possible); which one an adapter's event needs is chosen here, so that replacing the machinery changes
this module only:

* :func:`start_task_span` / :func:`end_task_span` / :func:`record_span` / :func:`run_span` — attempt,
  after-the-fact and run spans with derived ids (:mod:`pipetrace.spans`);
* :func:`deferred_span` — recorded when it ends (a publish, a consumed message: never current long);
* :func:`lazy_span` — built only when first needed, or off the task's thread after it ends;
* :func:`span_with_ids` — an eager SDK span with forced ids (an orchestrator seam that wants the SDK's
  own span object);
* :func:`start_span` — a plain eager span of the adapter's tracer (batch spans).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Tracer

from ..machinery.deferred import DeferredSpan, begin
from ..machinery.ids import forced_ids
from ..machinery.lazyspan import LazySpan
from ..processing.runtime import get_tracer
from ..spans import end_task_span, link, mark_result, record_span, run_span, start_task_span, to_ns

deferred_span = begin
"""``deferred_span(tracer, name, *, kind, attributes, context, links, trace_id, span_id, start_time, parent,
plain_attributes)`` → a span recorded when it ends (see :mod:`pipetrace.machinery.deferred`)."""


def lazy_span(tracer: Tracer, build: Callable[[], Span]) -> Span:
    """A span made by ``build`` when first needed, or after it ends off this thread."""
    return LazySpan(tracer, build)


def span_with_ids(name: str, *, context: Context | None, kind: SpanKind = SpanKind.INTERNAL,
                  attributes: Mapping[str, Any] | None = None, links: Sequence[Link] = (),
                  start_time: int | None = None, trace_id: int | None = None, span_id: int | None = None) -> Span:
    """An SDK span of pipetrace's tracer with the derived ``trace_id``/``span_id`` it must have."""
    with forced_ids(trace_id=trace_id, span_id=span_id):
        return get_tracer().start_span(name, context=context, kind=kind, attributes=attributes, links=links,
                                       start_time=start_time)


def start_span(tracer: Tracer, name: str, *, kind: SpanKind = SpanKind.INTERNAL,
               attributes: Mapping[str, Any] | None = None, links: Sequence[Link] = ()) -> Span:
    """A plain span of ``tracer``, child of the current span (not made current here)."""
    return tracer.start_span(name, kind=kind, attributes=attributes, links=links)


__all__ = ["DeferredSpan", "deferred_span", "end_task_span", "lazy_span", "link", "mark_result", "record_span",
           "run_span", "span_with_ids", "start_span", "start_task_span", "to_ns"]
