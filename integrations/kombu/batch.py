"""Batch consumption: one ``process {queue}`` span per batch, one link per message (OTel messaging
conventions for batch receive), and a small helper for the common drain-N-messages loop.

The SDK keeps at most ``max_links`` links per span (128 by default; pipetrace's own provider raises it
to ``PIPETRACE_SPAN_LINK_LIMIT``, 1024). Batches are never silently truncated: ``consume_batches``
caps the batch size at the provider's limit, and ``process_batch`` given more messages than that
records how many links it could not keep (``pipetrace.batch.links_dropped``) and warns once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry.trace import Link, Span, SpanKind
from pipetrace import attributes as A
from pipetrace.adapter import guarded_span, start_span, warn_once_per
from pipetrace.adapter.headers import message_headers, message_id
from pipetrace.adapter.messaging import base_attributes, connection_system, link_limit, queued_ms, tracer
from pipetrace.carriers import span_context_of

from .consumer import queue_of

log = logging.getLogger("pipetrace.kombu")

LINKS_DROPPED = "pipetrace.batch.links_dropped"


def message_link(message: Any) -> Link | None:
    """A ``message`` link to the producer span of one message (None if it carried no context)."""
    sc = span_context_of(message_headers(message), source="kombu batch message")
    if sc is None:
        return None
    return Link(sc, {A.LINK_KIND: "message", A.MESSAGING_MESSAGE_ID: str(message_id(message))})


def process_batch(messages: Sequence[Any], *, destination: str | None = None, connection: Any = None,
                  index: int | None = None) -> AbstractContextManager[Span]:
    """A live ``process {queue}`` CONSUMER span over ``messages``, current while the block runs.

    Child of the current span (a batch belongs to the task consuming it); each message's producer is
    a link, never the parent, since one span cannot have many parents."""
    return guarded_span(lambda: _start_batch(messages, destination, connection, index), log, "kombu-batch",
                        "batch not traced")


def _start_batch(messages: Sequence[Any], destination: str | None, connection: Any, index: int | None) -> Span:
    first = messages[0] if messages else None
    dest, rk = queue_of(first) if first is not None else ("", "")
    dest = destination or dest
    if connection is None and first is not None:
        connection = getattr(getattr(getattr(first, "channel", None), "connection", None), "client", None)
    limit = link_limit()
    links: list[Link] = []
    waits: list[float] = []
    for msg in messages:
        lk = message_link(msg)
        if lk is not None:
            links.append(lk)
        wait = queued_ms(message_headers(msg))
        if wait is not None:
            waits.append(wait)
    attrs = base_attributes(connection_system(connection), dest, "process", routing_key=rk or None)
    attrs[A.MESSAGING_BATCH_COUNT] = len(messages)
    attrs[A.BATCH_SIZE] = len(messages)
    if index is not None:
        attrs[A.BATCH_INDEX] = index
    if waits:
        attrs[A.QUEUED_MS] = max(waits)
    if len(links) > limit:
        attrs[LINKS_DROPPED] = len(links) - limit
        warn_once_per(log, "kombu-batch-links", "pipetrace: batch of %d messages exceeds the span link "
                      "limit %d; %d links dropped (set PIPETRACE_SPAN_LINK_LIMIT or use smaller batches)",
                      len(links), limit, len(links) - limit)
        links = links[:limit]
    return start_span(tracer(), f"process {dest or 'default'}", kind=SpanKind.CONSUMER, attributes=attrs,
                      links=links)


def consume_batches(connection: Any, queue: Any, batch_size: int = 100, *, timeout: float = 1.0,
                    max_messages: int | None = None, accept: Sequence[str] | None = None,
                    prefetch: bool = True) -> Iterator[list[Any]]:
    """Drain ``queue`` in lists of up to ``batch_size`` messages (acknowledge them yourself).

    Stops when no message arrives within ``timeout`` seconds or after ``max_messages``. The size is
    capped at the tracer provider's link limit so that ``process_batch`` never drops a link.
    """
    from kombu import Consumer

    limit = link_limit()
    if batch_size > limit:
        warn_once_per(log, "kombu-batch-size", "pipetrace: batch size %d capped at the span link limit %d",
                      batch_size, limit)
        batch_size = limit
    pending: list[Any] = []
    taken = 0
    consumer = Consumer(connection.default_channel, queues=[queue], accept=accept, auto_declare=True,
                        on_message=pending.append)
    if prefetch:
        consumer.qos(prefetch_count=batch_size)
    with consumer:
        while max_messages is None or taken < max_messages:
            want = batch_size if max_messages is None else min(batch_size, max_messages - taken)
            try:
                while len(pending) < want:
                    connection.drain_events(timeout=timeout)
            except TimeoutError:
                pass
            if not pending:
                return
            batch, pending[:] = pending[:want], pending[want:]
            taken += len(batch)
            yield batch
