"""``Producer.publish`` → a ``send {destination}`` PRODUCER span whose context travels in the headers.

kombu has no publish hook, so ``Producer.publish`` is wrapped (once, restorably). Celery task messages
are left to the Celery adapter (its signals know the task), and Celery's own control traffic is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from opentelemetry.trace import SpanKind
from pipetrace.adapter import deferred_span, ending, warn_once_per
from pipetrace.adapter.headers import stamp
from pipetrace.adapter.messaging import (
    base_attributes,
    connection_system,
    is_internal,
    publish_failed,
    stamp_published,
    tracer,
)
from pipetrace.carriers import inject

log = logging.getLogger("pipetrace.kombu")

spans_enabled = True
"""False in propagation-only mode: context and publish time still go into the headers, no span."""


def _is_celery_task(headers: object) -> bool:
    return isinstance(headers, dict) and "task" in headers and "id" in headers


def _destination(producer: Any, exchange: Any, routing_key: Any) -> tuple[str, str]:
    ex = exchange if exchange is not None else producer.exchange
    ex_name = getattr(ex, "name", ex) or ""
    rk = routing_key if routing_key is not None else producer.routing_key
    rk = rk or ""
    return (str(ex_name) if ex_name else str(rk)), str(rk)


def traced_publish(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``Producer.publish(body, routing_key=None, ...)`` under a ``send`` span (the ``wrapt`` wrapper)."""
    if not args:
        return wrapped(*args, **kwargs)
    body = args[0]
    routing_key = args[1] if len(args) > 1 else kwargs.pop("routing_key", None)
    args = args[2:]
    headers = kwargs.get("headers")
    if _is_celery_task(headers):
        try:
            return wrapped(body, routing_key, *args, **kwargs)
        except BaseException as exc:
            publish_failed(headers, exc)
            raise
    if len(args) > 7:  # headers given positionally: too unusual to rewrite safely
        return wrapped(body, routing_key, *args, **kwargs)
    try:
        dest, rk = _destination(instance, kwargs.get("exchange"), routing_key)
        if is_internal(dest, rk):
            return wrapped(body, routing_key, *args, **kwargs)
        out = dict(headers) if headers else {}  # never mutate the caller's dict
        if not spans_enabled:
            inject(out)
            stamp_published(out)
            kwargs["headers"] = out
            return wrapped(body, routing_key, *args, **kwargs)
        attrs = base_attributes(connection_system(instance.connection), dest, "send", routing_key=rk)
        span = deferred_span(tracer(), f"send {dest or 'default'}", kind=SpanKind.PRODUCER, attributes=attrs)
        stamp(out, span.get_span_context(), span.start_time)
        kwargs["headers"] = out
    except Exception as exc:
        warn_once_per(log, "kombu-publish", "pipetrace: kombu publish not traced: %r", exc)
        return wrapped(body, routing_key, *args, **kwargs)
    with ending(span, current=False):
        return wrapped(body, routing_key, *args, **kwargs)

