"""Span machinery: the one span handle (eager and deferred strategies) and the only code that touches
the OpenTelemetry SDK's internals.

The API every other part of pipetrace makes spans with (see :mod:`.handle` for when to use which):

- ``start_span(tracer, name, *, context, kind, attributes, links, start_time, trace_id, span_id,
  record_exception, set_status_on_exception)`` — eager: the SDK's own span, now, with the ids given;
- ``begin_span(tracer, name, *, kind, attributes, context, links, trace_id, span_id, start_time, parent,
  plain_attributes)`` — deferred: a :class:`DeferredSpan`, recorded in one step when it ends;
- ``add_link(span, context, attributes)`` — a link added to a running span, as the SDK's ``add_link`` does.

Modules: ``handle`` (the handle and its strategies), ``record`` (the SDK record each strategy makes),
``ids`` (derived ids into SDK spans), ``sdk`` (every other private SDK name: processors, resources,
samplers, limits), ``otlpwire`` (OTLP/HTTP batches encoded straight to protobuf bytes, sent by the SDK
exporter's own client).
"""

from __future__ import annotations

from .handle import DeferredSpan, SpanHandle, begin_span, start_span
from .record import add_link

__all__ = ["DeferredSpan", "SpanHandle", "add_link", "begin_span", "start_span"]
