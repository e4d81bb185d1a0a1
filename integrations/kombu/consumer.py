"""Consumer side: a ``process {queue}`` CONSUMER span per message delivered to kombu callbacks.

kombu calls ``Consumer.receive(body, message)`` for callback consumers (``on_message`` consumers such
as Celery's worker bypass it, and the Celery adapter covers those). A message without a usable context
(untraced producer, garbage headers) still gets its span — a new root with an event saying why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import Span
from pipetrace import attributes as A
from pipetrace.adapter import ending, warn_once_per
from pipetrace.adapter.headers import delivered_to, message_headers, message_id
from pipetrace.adapter.messaging import (
    base_attributes,
    connection_system,
    consumer_span,
    is_internal,
    parent_of,
    queued_ms,
)

log = logging.getLogger("pipetrace.kombu")

spans_enabled = True


def queue_of(message: Any, consumer: Any = None) -> tuple[str, str]:
    """(destination, routing key) of a delivered message (the consumer's first queue if unknown)."""
    dest, rk = delivered_to(getattr(message, "delivery_info", None))
    if not dest and consumer is not None:
        queues = getattr(consumer, "queues", None) or []
        if queues:
            dest = str(getattr(queues[0], "name", "") or "")
    return dest, rk or ""


def start_process_span(message: Any, consumer: Any = None, connection: Any = None) -> Span:
    headers = message_headers(message)
    dest, rk = queue_of(message, consumer)
    system = connection_system(connection if connection is not None else getattr(consumer, "connection", None))
    attrs = base_attributes(system, dest, "process", message_id(message), routing_key=rk)
    wait = queued_ms(headers)
    if wait is not None:
        attrs[A.QUEUED_MS] = wait
    return consumer_span(f"process {dest or 'default'}", headers, attrs, source=f"kombu message on {dest}")


def traced_receive(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``Consumer.receive(body, message)`` under a ``process`` span (the ``wrapt`` wrapper)."""
    if len(args) != 2 or kwargs:
        return wrapped(*args, **kwargs)
    body, message = args
    try:
        dest, rk = queue_of(message, instance)
        info = getattr(message, "delivery_info", None) or {}
        if is_internal(dest, rk, info.get("exchange")):
            return wrapped(body, message)
        if not spans_enabled:  # propagation only: the producer's context is current, no span
            token = otel_context.attach(parent_of(message_headers(message), "kombu message")[0] or Context())
            try:
                return wrapped(body, message)
            finally:
                otel_context.detach(token)
        span = start_process_span(message, instance)
    except Exception as exc:
        warn_once_per(log, "kombu-receive", "pipetrace: kombu message not traced: %r", exc)
        return wrapped(body, message)
    with ending(span):
        return wrapped(body, message)

