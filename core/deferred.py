"""Spans built when they end, for operations that are never the current span (a message publish).

Why: a Celery or kombu publish span marks a hand-off — no code runs inside it — so nothing needs a
live SDK span object between its start and its end. The ids and the sampling decision are made when
the operation starts (the context must go into the message headers then); the finished span is made
in one step when it ends: a ``ReadableSpan`` handed straight to the processors when none of them
looks at spans while they run (pipetrace's own chain, the SDK's batch and simple processors), or
otherwise the SDK's own span, started with the recorded start time and ended at once. Measured in a
real producer on Redis, a live SDK span adds ~45 µs to a publish (its many small objects are cold
after each broker round trip); the finished ``ReadableSpan`` ~17 µs.

The result is the span the SDK would have made: same ids, sampler call, resource, scope, attributes.
Anything unusual (links, an exception, attributes over the span limits, a string length limit, a
foreign tracer) takes the SDK's own span path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, Tracer

from . import fastspan
from .ratelimit import warn_once_per

log = logging.getLogger("pipetrace.spans")

_PLAIN = frozenset((str, bool, int, float))


def _sdk_no_op_hooks() -> set[Any]:
    hooks: set[Any] = {SpanProcessor.on_start, getattr(SpanProcessor, "_on_ending", None)}
    try:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        for cls in (BatchSpanProcessor, SimpleSpanProcessor):
            hooks.update((cls.on_start, getattr(cls, "_on_ending", None)))
    except ImportError:  # pragma: no cover
        pass
    hooks.discard(None)
    return hooks


_NO_OP_HOOKS = _sdk_no_op_hooks()
# (the processors tuple last checked, whether all of them ignore running spans)
_checked: list[Any] = [None, False]


def _ignores_running_spans(processor: object) -> bool:
    cls = type(processor)
    if getattr(cls, "ignores_running_spans", False):  # pipetrace's processors say so themselves
        return True
    ending = getattr(cls, "_on_ending", None)
    return cls.on_start in _NO_OP_HOOKS and (ending is None or ending in _NO_OP_HOOKS)  # type: ignore[attr-defined]


def emits_directly(tracer: Any) -> bool:
    """True when every processor of ``tracer`` only looks at ended spans: a ``ReadableSpan`` built at
    the end is then all they would ever have seen."""
    processors = getattr(getattr(tracer, "span_processor", None), "_span_processors", None)
    if processors is None:
        return False
    if processors is not _checked[0]:
        _checked[1] = all(_ignores_running_spans(p) for p in processors)
        _checked[0] = processors
    return bool(_checked[1])


def _plain_attributes(tracer: Any, attributes: Mapping[str, Any] | None, extra: dict[str, Any] | None
                      ) -> dict[str, Any] | None:
    """The span's attributes as the SDK would store them, or None when only the SDK's bounded
    attributes can say it (limits to apply, a value to clean)."""
    limits = tracer._span_limits
    out = dict(attributes) if attributes else {}
    if extra:
        out.update(extra)
    maxlen = limits.max_span_attributes
    if limits.max_span_attribute_length is not None or (maxlen is not None and len(out) > maxlen):
        return None
    for key, value in out.items():
        if type(value) not in _PLAIN or type(key) is not str or not key:
            return None
    return out


class DeferredSpan:
    """A span whose ids and sampling were decided at its start and whose record is made at its end."""

    __slots__ = ("_tracer", "name", "kind", "start_time", "_decided", "_context", "_links", "_extra", "_live",
                 "_done")

    def __init__(self, tracer: Any, name: str, kind: SpanKind, start_time: int, decided: Any,
                 context: Context | None, links: Sequence[Link], live: Span | None = None) -> None:
        self._tracer = tracer
        self.name = name
        self.kind = kind
        self.start_time = start_time
        self._decided = decided
        self._context = context
        self._links = links
        self._extra: dict[str, Any] | None = None
        self._live = live
        self._done = False

    def get_span_context(self) -> SpanContext:
        if self._live is not None:
            return self._live.get_span_context()
        decided = self._decided
        return decided.context if isinstance(decided, fastspan.Decision) else decided.get_span_context()

    def is_recording(self) -> bool:
        if self._live is not None:
            return self._live.is_recording()
        return not self._done and isinstance(self._decided, fastspan.Decision)

    def set_attribute(self, key: str, value: Any) -> None:
        if self._live is not None:
            self._live.set_attribute(key, value)
        elif not self._done:
            if self._extra is None:
                self._extra = {}
            self._extra[key] = value

    def live(self) -> Span:
        """The SDK span itself, made now with the recorded start time (for the rare paths that
        record more than attributes, such as an exception); end it as usual."""
        if self._live is None:
            decided = self._decided
            if isinstance(decided, fastspan.Decision) and not self._done:
                self._live = fastspan.materialise(self._tracer, self.name, decided, self._context, self.kind,
                                                  self._links, self.start_time)
                if self._extra:
                    self._live.set_attributes(self._extra)
            else:
                self._live = NonRecordingSpan(self.get_span_context())
            self._done = True
        return self._live

    def end(self, end_time: int | None = None) -> None:
        if self._live is not None:
            self._live.end(end_time=end_time)
            return
        if self._done:
            return
        decided = self._decided
        if not isinstance(decided, fastspan.Decision):
            self._done = True
            return
        tracer = self._tracer
        end = end_time if end_time is not None else time.time_ns()
        try:
            attrs = None if self._links or not emits_directly(tracer) else _plain_attributes(
                tracer, decided.attributes, self._extra)
            if attrs is None:
                self.live().end(end_time=end)
                return
            self._done = True
            if decided.end_metrics is not None:
                decided.end_metrics()
            tracer.span_processor.on_end(ReadableSpan(
                name=self.name, context=decided.context, parent=decided.parent, resource=tracer.resource,
                attributes=attrs, kind=self.kind, instrumentation_info=tracer.instrumentation_info,
                start_time=self.start_time, end_time=end, instrumentation_scope=tracer._instrumentation_scope))
        except Exception as exc:
            warn_once_per(log, "deferred-end", "pipetrace: could not record span %s: %r", self.name, exc)


def begin(tracer: Tracer, name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: Mapping[str, Any] | None = None,
          context: Context | None = None, links: Sequence[Link] = (), trace_id: int | None = None,
          span_id: int | None = None, start_time: int | None = None) -> DeferredSpan:
    """Start a span that will be recorded when it ends; ``context`` None means the current one."""
    start = start_time if start_time is not None else time.time_ns()
    if fastspan.usable(tracer):
        try:
            decided = fastspan.decide(tracer, name, context, kind, attributes, links, trace_id, span_id)
            return DeferredSpan(tracer, name, kind, start, decided, context, links)
        except Exception as exc:
            fastspan.lean_failed(exc)
    live = fastspan.start_span(tracer, name, context=context, kind=kind, attributes=attributes, links=links,
                               start_time=start, trace_id=trace_id, span_id=span_id)
    return DeferredSpan(tracer, name, kind, start, live, context, links, live=live)
