"""Message-header, attribute and tracer helpers of the messaging adapters (kombu, Celery).

Why in core: both adapters speak kombu messages; one place decides the header names, the broker name
(``messaging.system``), the messaging attributes, how queue wait is measured and how a consumer finds
its producer, so a Celery task and a plain kombu consumer report the same figures.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, MutableMapping
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanContext, Tracer, TracerProvider

from .. import attributes as A
from ..carriers import extract, extract_span_context
from ..machinery.sdk import span_limits
from ..processing.runtime import get_tracer

PUBLISHED_HEADER = "pipetrace-published-ns"
"""Epoch nanoseconds (as text) when the producer handed the message to the broker: queue wait origin."""

SYSTEMS = {"amqp": "rabbitmq", "py-amqp": "rabbitmq", "librabbitmq": "rabbitmq", "redis": "redis",
           "sqs": "aws_sqs", "memory": "memory", "filesystem": "filesystem", "mongodb": "mongodb",
           "qpid": "qpid", "kafka": "kafka", "gcpubsub": "gcp_pubsub", "azureservicebus": "servicebus"}

INTERNAL_MARKERS = ("pidbox", "celeryev", "celery_gossip")
"""Celery's control/event/gossip traffic: never traced (it is not pipeline data)."""

OPERATION_NAMES = {"send": "publish", "process": "process", "receive": "receive"}

_provider: TracerProvider | None = None


# ---- which tracer ------------------------------------------------------------------------------------
def set_provider(provider: TracerProvider | None) -> None:
    """The provider given to a messaging adapter's ``instrument()`` (None: pipetrace's own)."""
    global _provider
    _provider = provider


def tracer() -> Tracer:
    if _provider is not None:
        return _provider.get_tracer("pipetrace")
    return get_tracer()


def link_limit() -> int:
    """Most links one span keeps on the active provider (the SDK default is 128)."""
    if _provider is None:
        get_tracer()  # configures the provider on first use
    provider = _provider or trace.get_tracer_provider()
    value = getattr(span_limits(provider), "max_links", None)
    return int(value) if isinstance(value, int) and value > 0 else 128


# ---- broker, destination, attributes -----------------------------------------------------------------
def messaging_system(connection: object) -> str:
    """``messaging.system`` of a kombu Connection (cached on it): rabbitmq, redis, memory, …"""
    cached = getattr(connection, "_pipetrace_system", None)
    if cached is not None:
        return str(cached)
    try:
        driver = str(connection.transport.driver_type)  # type: ignore[attr-defined]
    except Exception:
        driver = "kombu"
    system = SYSTEMS.get(driver, driver)
    try:
        connection._pipetrace_system = system  # type: ignore[attr-defined]
    except Exception:
        pass
    return system


def is_internal(*names: object) -> bool:
    for name in names:
        text = getattr(name, "name", name)
        if isinstance(text, str) and text and any(m in text for m in INTERNAL_MARKERS):
            return True
    return False


@functools.lru_cache(maxsize=1024)  # a process talks to a handful of queues: built once each
def _static_attributes(system: str, destination: str, operation: str, routing_key: str | None
                       ) -> tuple[tuple[str, Any], ...]:
    attrs: dict[str, Any] = {
        A.SYSTEM: "kombu",  # the Celery adapter, built on these, sets its own
        A.MESSAGING_SYSTEM: system,
        A.MESSAGING_DESTINATION: destination,
        A.MESSAGING_OPERATION_TYPE: operation,
        A.MESSAGING_OPERATION_NAME: OPERATION_NAMES.get(operation, operation),
    }
    if system == "rabbitmq" and routing_key is not None:
        attrs["messaging.rabbitmq.destination.routing_key"] = routing_key
    return tuple(attrs.items())


def base_attributes(system: str, destination: str, operation: str, message_id: object = None,
                    routing_key: str | None = None) -> dict[str, Any]:
    """The OTel messaging attributes of one operation (``send``, ``receive`` or ``process``)."""
    attrs = dict(_static_attributes(system, destination, operation, routing_key if system == "rabbitmq" else None))
    if message_id is not None and message_id != "":
        attrs[A.MESSAGING_MESSAGE_ID] = str(message_id)
    return attrs


# ---- queue wait --------------------------------------------------------------------------------------
def stamp_published(headers: MutableMapping[str, Any], now_ns: int | None = None) -> None:
    headers[PUBLISHED_HEADER] = str(now_ns if now_ns is not None else time.time_ns())


def _eta_ns(eta: object) -> int | None:
    if isinstance(eta, datetime):
        return int(eta.timestamp() * 1e9)
    if isinstance(eta, str) and eta:
        try:
            return int(datetime.fromisoformat(eta).timestamp() * 1e9)
        except ValueError:
            return None
    return None


def queued_ms(headers: Mapping[str, Any] | None, now_ns: int | None = None, eta: object = None) -> float | None:
    """Milliseconds between publish (or the ETA, when later) and ``now``; None when unknown.

    A countdown task is not "waiting in the queue" before its ETA, so the later of the two counts."""
    if not headers:
        return None
    raw = headers.get(PUBLISHED_HEADER)
    if isinstance(raw, bytes):
        raw = raw.decode("ascii", "replace")
    try:
        published = int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if eta is not None:
        published = max(published, _eta_ns(eta) or 0)
    now = now_ns if now_ns is not None else time.time_ns()
    return max(0, now - published) // 1000 / 1000  # ms, to the µs below (integer steps: no float rounding)


# ---- the producer's context on the consumer side -----------------------------------------------------
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


# ---- a refused publish ---------------------------------------------------------------------------------
_publish_failed: Callable[[Any, BaseException], None] | None = None


def on_publish_failed(handler: Callable[[Any, BaseException], None] | None) -> None:
    """Who is told when the broker refuses a task message the kombu wrapper leaves to its task adapter
    (Celery: no after-publish signal comes then, and its publish span must still end)."""
    global _publish_failed
    _publish_failed = handler


def publish_failed(headers: Any, exc: BaseException) -> None:
    handler = _publish_failed
    if handler is not None:
        handler(headers, exc)
