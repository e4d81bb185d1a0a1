"""Consumer side: a ``process {queue}`` CONSUMER span per message delivered to kombu callbacks.

kombu calls ``Consumer.receive(body, message)`` for callback consumers (``on_message`` consumers such
as Celery's worker bypass it, and the Celery adapter covers those). A message without a usable context
(untraced producer, garbage headers) still gets its span — a new root with an event saying why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanContext, SpanKind
from pipetrace import attributes as A
from pipetrace.carriers import extract, extract_span_context
from pipetrace.machinery import begin_span
from pipetrace.util.ratelimit import warn_once_per

from .messaging import base_attributes, end_with_error, is_internal, messaging_system, queued_ms
from .tracer import tracer

log = logging.getLogger("pipetrace.kombu")

_original: Callable[..., Any] | None = None
spans_enabled = True


def message_headers(message: Any) -> Mapping[str, Any]:
    headers = getattr(message, "headers", None)
    return headers if isinstance(headers, Mapping) else {}


def message_id(message: Any) -> Any:
    props = getattr(message, "properties", None) or {}
    mid = props.get("message_id") if isinstance(props, Mapping) else None
    if mid is None:
        mid = message_headers(message).get("id")
    if mid is None:
        mid = getattr(message, "delivery_tag", None)
    return mid


def queue_of(message: Any, consumer: Any = None) -> tuple[str, str]:
    """(destination, routing key) of a delivered message."""
    info = getattr(message, "delivery_info", None) or {}
    rk = str(info.get("routing_key") or "")
    dest = rk or str(info.get("exchange") or "")
    if not dest and consumer is not None:
        queues = getattr(consumer, "queues", None) or []
        if queues:
            dest = str(getattr(queues[0], "name", "") or "")
    return dest, rk


def _missing_reason(headers: Mapping[str, Any]) -> str:
    raw = headers.get("traceparent") if headers else None
    if raw is None:
        return "no trace context in message headers"
    return f"unusable traceparent header ({type(raw).__name__}, {len(str(raw))} chars)"


def parent_of(headers: Mapping[str, Any], source: str) -> tuple[Context | None, str | None]:
    """The producer's context, or None with the reason it could not be used (for a span event)."""
    ctx = extract(headers, source=source)
    return (ctx, None) if ctx is not None else (None, _missing_reason(headers))


def parent_span_of(headers: Mapping[str, Any], source: str) -> tuple[SpanContext | None, str | None]:
    """:func:`parent_of` as the producer's span context itself (what a consumer span starts from)."""
    sc = extract_span_context(headers, source=source)
    return (sc, None) if sc is not None else (None, _missing_reason(headers))


def bad_context_event(span: Span, reason: str) -> None:
    span.add_event("pipetrace.context.missing", {"pipetrace.context.reason": reason})


def start_process_span(message: Any, consumer: Any = None, connection: Any = None) -> Span:
    headers = message_headers(message)
    dest, rk = queue_of(message, consumer)
    system = messaging_system(connection if connection is not None else getattr(consumer, "connection", None))
    parent, reason = parent_span_of(headers, f"kombu message on {dest}")
    attrs = base_attributes(system, dest, "process", message_id(message), routing_key=rk)
    wait = queued_ms(headers)
    if wait is not None:
        attrs[A.QUEUED_MS] = wait
    span = begin_span(tracer(), f"process {dest or 'default'}", context=Context(), parent=parent,
                      kind=SpanKind.CONSUMER, attributes=attrs)
    if reason is not None:
        bad_context_event(span, reason)
    return span


def traced_receive(self: Any, body: Any, message: Any) -> Any:
    original = _original
    assert original is not None
    try:
        dest, rk = queue_of(message, self)
        info = getattr(message, "delivery_info", None) or {}
        if is_internal(dest, rk, info.get("exchange")):
            return original(self, body, message)
        if not spans_enabled:  # propagation only: the producer's context is current, no span
            token = otel_context.attach(parent_of(message_headers(message), "kombu message")[0] or Context())
            try:
                return original(self, body, message)
            finally:
                otel_context.detach(token)
        span = start_process_span(message, self)
        token = otel_context.attach(trace.set_span_in_context(span))
    except Exception as exc:
        warn_once_per(log, "kombu-receive", "pipetrace: kombu message not traced: %r", exc)
        return original(self, body, message)
    try:
        return original(self, body, message)
    except BaseException as exc:
        try:
            end_with_error(span, exc)
        except Exception:
            pass
        raise
    finally:
        try:
            otel_context.detach(token)
            span.end()
        except Exception:
            pass


def patch() -> None:
    global _original
    from kombu.messaging import Consumer

    if _original is None:
        _original = Consumer.receive
        Consumer.receive = traced_receive  # type: ignore[method-assign]


def unpatch() -> None:
    global _original
    from kombu.messaging import Consumer

    if _original is not None:
        Consumer.receive = _original  # type: ignore[method-assign]
        _original = None
