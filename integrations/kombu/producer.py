"""``Producer.publish`` → a ``send {destination}`` PRODUCER span whose context travels in the headers.

kombu has no publish hook, so ``Producer.publish`` is wrapped (once, restorably). Celery task messages
are left to the Celery adapter (its signals know the task), and Celery's own control traffic is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from opentelemetry.trace import SpanKind
from pipetrace.carriers import inject, inject_span_context
from pipetrace.machinery import begin_span
from pipetrace.util.ratelimit import warn_once_per

from .messaging import base_attributes, end_with_error, is_internal, messaging_system, stamp_published
from .tracer import tracer

log = logging.getLogger("pipetrace.kombu")

_original: Callable[..., Any] | None = None
spans_enabled = True
"""False in propagation-only mode: context and publish time still go into the headers, no span."""
celery_publish_failed: Callable[[Any, BaseException], None] | None = None
"""Set by the Celery adapter: told when the broker refuses a Celery task message (no after-publish
signal comes then, and its publish span must still end)."""


def _is_celery_task(headers: object) -> bool:
    return isinstance(headers, dict) and "task" in headers and "id" in headers


def _destination(producer: Any, exchange: Any, routing_key: Any) -> tuple[str, str]:
    ex = exchange if exchange is not None else producer.exchange
    ex_name = getattr(ex, "name", ex) or ""
    rk = routing_key if routing_key is not None else producer.routing_key
    rk = rk or ""
    return (str(ex_name) if ex_name else str(rk)), str(rk)


def traced_publish(self: Any, body: Any, routing_key: Any = None, *args: Any, **kwargs: Any) -> Any:
    original = _original
    assert original is not None
    headers = kwargs.get("headers")
    if _is_celery_task(headers):
        try:
            return original(self, body, routing_key, *args, **kwargs)
        except BaseException as exc:
            hook = celery_publish_failed
            if hook is not None:
                hook(headers, exc)
            raise
    if len(args) > 7:  # headers given positionally: too unusual to rewrite safely
        return original(self, body, routing_key, *args, **kwargs)
    try:
        dest, rk = _destination(self, kwargs.get("exchange"), routing_key)
        if is_internal(dest, rk):
            return original(self, body, routing_key, *args, **kwargs)
        out = dict(headers) if headers else {}  # never mutate the caller's dict
        if not spans_enabled:
            inject(out)
            stamp_published(out)
            kwargs["headers"] = out
            return original(self, body, routing_key, *args, **kwargs)
        attrs = base_attributes(messaging_system(self.connection), dest, "send", routing_key=rk)
        span = begin_span(tracer(), f"send {dest or 'default'}", kind=SpanKind.PRODUCER, attributes=attrs)
        inject_span_context(out, span.get_span_context())
        stamp_published(out, span.start_time)
        kwargs["headers"] = out
    except Exception as exc:
        warn_once_per(log, "kombu-publish", "pipetrace: kombu publish not traced: %r", exc)
        return original(self, body, routing_key, *args, **kwargs)
    try:
        return original(self, body, routing_key, *args, **kwargs)
    except BaseException as exc:
        try:
            end_with_error(span.live(), exc)
        except Exception:
            pass
        raise
    finally:
        try:
            span.end()
        except Exception:
            pass


def patch() -> None:
    global _original
    from kombu.messaging import Producer

    if _original is None:
        _original = Producer.publish
        Producer.publish = traced_publish  # type: ignore[method-assign]


def unpatch() -> None:
    global _original
    from kombu.messaging import Producer

    if _original is not None:
        Producer.publish = _original  # type: ignore[method-assign]
        _original = None
