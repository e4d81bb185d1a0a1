"""A span that is started now and made when first needed — at the latest after it ends, off the thread.

Why: a Celery task's span is current while the task body runs, but for most tasks nothing ever looks
at it while it runs (no user span under it, no message published from it): its ids, its parent from
the message headers, its sampling decision, its attributes and its record can all be made after it
ends, in a batch on :mod:`pipetrace.machinery.later`'s thread, where that work costs a fraction of what it
costs cold on the task's thread. ``build`` makes the span (a :class:`pipetrace.machinery.deferred.DeferredSpan`
with the recorded start time) from what was captured at the start; it gives the same span whenever it
runs, so the result is the span an eager start would have made.

Anything that needs the span while it runs — its context (a child span, a publish, log correlation),
an event, an exception, a status — builds it at once in the calling thread and forwards to it. Plain
attributes set before that are kept and replayed. When the tracer's processors are not ones that
drain the later queue before they flush (:func:`pipetrace.machinery.later.accepts`), the span is built and
ended in ``end`` itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.trace import Span, SpanContext, Status, StatusCode

from ..ratelimit import warn_once_per
from . import later

log = logging.getLogger("pipetrace.spans")


class LazySpan(trace_api.Span):
    """An API span whose real span is made by ``build()`` when first needed."""

    __slots__ = ("_build", "_real", "_tracer", "_pending", "_ended")

    def __init__(self, tracer: Any, build: Callable[[], Span]) -> None:
        self._tracer = tracer
        self._build: Callable[[], Span] | None = build
        self._real: Span | None = None
        self._pending: list[tuple[str, Any]] | None = None  # attributes set before the build
        self._ended = False

    def real(self) -> Span:
        """The span itself, built now if it was not yet (with the attributes set so far). Never raises:
        a build that fails gives a non-recording span (and one rate-limited warning)."""
        real = self._real
        if real is not None:
            return real
        build = self._build
        if build is None:  # being built right now: asked from inside the build (a log record's trace ids)
            return trace_api.INVALID_SPAN  # or by another thread at that instant; no lock to deadlock on
        self._build = None
        try:
            span = build()
        except Exception as exc:
            warn_once_per(log, "lazy-build", "pipetrace: could not make a span: %r", exc)
            span = trace_api.INVALID_SPAN
        self._real = span  # first: an attribute set from now on goes to it directly (see set_attribute)
        pending, self._pending = self._pending, None
        for key, value in pending or ():
            span.set_attribute(key, value)
        return span

    @property
    def built(self) -> bool:
        return self._real is not None

    # --- the API span ---------------------------------------------------------------------------------

    def get_span_context(self) -> SpanContext:
        return self.real().get_span_context()

    def is_recording(self) -> bool:
        return not self._ended and self.real().is_recording()

    def set_attribute(self, key: str, value: Any) -> None:
        if self._real is None:
            if self._ended:
                return  # ended and not built: ignored, as the SDK ignores it on an ended span
            pending = self._pending
            if pending is None:
                pending = self._pending = []
            pending.append((key, value))
            if self._real is None:
                return  # the build replays it
            # built meanwhile by another thread, which may have replayed the list before this append
        self._real.set_attribute(key, value)

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None) -> None:
        self.real().add_event(name, attributes, timestamp)

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        self.real().add_link(context, attributes)

    def update_name(self, name: str) -> None:
        self.real().update_name(name)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        self.real().set_status(status, description)

    def record_exception(self, exception: BaseException, attributes: Mapping[str, Any] | None = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        self.real().record_exception(exception, attributes, timestamp, escaped)

    def __exit__(self, exc_type: Any, exc_val: BaseException | None, exc_tb: Any) -> None:
        if exc_val is not None and not self._ended:
            self.real().__exit__(exc_type, exc_val, exc_tb)  # the SDK's rules for an escaping exception
            self._ended = True
            return
        self.end()

    def end(self, end_time: int | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        end = end_time if end_time is not None else time.time_ns()
        if self._real is None and later.accepts(self._tracer):
            later.submit(_finish, self, end)
        else:
            _finish(self, end)


def _finish(span: LazySpan, end_time: int) -> None:
    try:
        span.real().end(end_time=end_time)
    except Exception as exc:
        warn_once_per(log, "lazy-end", "pipetrace: could not record a span: %r", exc)
