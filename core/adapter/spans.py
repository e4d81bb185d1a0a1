"""Every way an adapter makes a span, in one place: the adapters call these, never the span machinery.

The machinery offers several strategies of one idea (a span whose SDK record is made as late as
possible); which one an adapter's event needs is chosen here, so that replacing the machinery changes
this module only:

* :func:`start_task_span` / :func:`end_task_span` / :func:`record_span` / :func:`run_span` — attempt (a
  deferred span), after-the-fact and run spans with derived ids (:mod:`pipetrace.spans`);
* :func:`deferred_span` — recorded when it ends (a publish, a consumed message, a Prefect attempt);
* :func:`span_with_ids` — an eager SDK span with forced ids (an orchestrator seam that wants the SDK's
  own span object);
* :func:`start_span` — a plain eager span of the adapter's tracer (batch spans);
* :func:`with_links` — a finished span with other links (an export transform);
* :func:`add_link` — a link added to a running span (``span.add_link``, cheaper on an SDK span).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Link, Span, SpanKind, Tracer

from ..machinery import DeferredSpan, add_link, begin_span
from ..machinery import start_span as _start_span
from ..machinery.current import attach_span
from ..spans import end_task_span, link, mark_result, record_span, run_span, start_task_span, to_ns
from ..util.ratelimit import warn_once_per
from .errors import end_with_error

deferred_span = begin_span
"""``deferred_span(tracer, name, *, kind, attributes, context, links, trace_id, span_id, start_time, parent,
plain_attributes, record_exception, set_status_on_exception)`` → a span recorded when it ends (the
deferred strategy of :mod:`pipetrace.machinery`); links added while it runs stay on that path."""


def span_with_ids(tracer: Tracer, name: str, *, context: Context | None, kind: SpanKind = SpanKind.INTERNAL,
                  attributes: Mapping[str, Any] | None = None, links: Sequence[Link] = (),
                  start_time: int | None = None, trace_id: int | None = None, span_id: int | None = None,
                  record_exception: bool = True, set_status_on_exception: bool = True) -> Span:
    """An SDK span of ``tracer`` (pipetrace's: ``get_tracer()``) with the derived ``trace_id``/``span_id``
    it must have (the two flags as in the SDK's ``start_span``)."""
    return _start_span(tracer, name, context=context, kind=kind, attributes=attributes, links=links,
                       start_time=start_time, trace_id=trace_id, span_id=span_id, record_exception=record_exception,
                       set_status_on_exception=set_status_on_exception)


def start_span(tracer: Tracer, name: str, *, kind: SpanKind = SpanKind.INTERNAL,
               attributes: Mapping[str, Any] | None = None, links: Sequence[Link] = ()) -> Span:
    """A plain span of ``tracer``, child of the current span (not made current here)."""
    return _start_span(tracer, name, kind=kind, attributes=attributes, links=links)


def with_links(span: ReadableSpan, links: Sequence[Link]) -> ReadableSpan:
    """A copy of the finished ``span`` whose links are ``links``, everything else the same."""
    return ReadableSpan(
        name=span.name, context=span.context, parent=span.parent, resource=span.resource,
        attributes=span.attributes, events=span.events, links=links, kind=span.kind, status=span.status,
        start_time=span.start_time, end_time=span.end_time, instrumentation_scope=span.instrumentation_scope,
    )


__all__ = ["DeferredSpan", "add_link", "deferred_span", "end_task_span", "ending", "guarded_span", "link",
           "mark_result", "record_span", "run_span", "span_with_ids", "start_span", "start_task_span", "to_ns",
           "with_links"]


class ending:  # noqa: N801 - used like a function: ``with ending(span): ...``
    """Run a block in ``span`` (current unless ``current`` is False) and end the span after it; an
    exception escaping the block is recorded on it and propagates unchanged. A class, not a generator:
    it is on the per-message path."""

    __slots__ = ("span", "current", "_token")

    def __init__(self, span: Span, *, current: bool = True) -> None:
        self.span = span
        self.current = current
        self._token: object = None

    def __enter__(self) -> Span:
        if self.current:
            self._token = attach_span(self.span)
        return self.span

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            if self._token is not None:
                context_api.detach(self._token)  # type: ignore[arg-type]
            if exc is not None:
                live = getattr(self.span, "live", None)  # a deferred span: the record is made now
                end_with_error(live() if live is not None else self.span, exc)
        except Exception:
            pass
        try:
            self.span.end()
        except Exception:
            pass


@contextmanager
def guarded_span(make: Callable[[], Span], log: logging.Logger, key: str, what: str,
                 before_end: Callable[[Span], object] | None = None) -> Iterator[Span]:
    """Run a block in the live span ``make()`` starts (a batch span over the messages a block publishes or
    consumes), ending it after the block. Never breaks the block: if ``make`` fails, the block runs in no
    span and ``what`` is warned once per ``key``; ``before_end(span)`` runs (guarded) before the span ends."""
    span: Span = trace.INVALID_SPAN
    try:
        span = make()
    except Exception as exc:
        warn_once_per(log, key, "pipetrace: %s: %r", what, exc)
    with ending(span) as live:
        try:
            yield live
        finally:
            if before_end is not None and span is not trace.INVALID_SPAN:
                try:
                    before_end(span)
                except Exception as exc:
                    warn_once_per(log, f"{key}-end", "pipetrace: %s (at its end): %r", what, exc)
