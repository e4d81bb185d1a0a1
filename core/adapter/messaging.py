"""Message-header, attribute and tracer helpers of the messaging adapters (kombu, Celery).

Why in core: both adapters speak kombu messages; one place decides the header names, the broker name
(``messaging.system``), the messaging attributes, how queue wait is measured and how a consumer finds
its producer, so a Celery task and a plain kombu consumer report the same figures.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Tracer, TracerProvider

from .. import attributes as A
from ..carriers import extract, extract_span_context
from ..machinery.sdk import span_limits
from ..processing.runtime import get_tracer
from .attempts import OpenAttempts
from .errors import end_with_error
from .spans import DeferredSpan, deferred_span

PUBLISHED_HEADER = "pipetrace-published-ns"
"""Epoch nanoseconds (as text) when the producer handed the message to the broker: queue wait origin."""

SYSTEMS = {"amqp": "rabbitmq", "py-amqp": "rabbitmq", "librabbitmq": "rabbitmq", "redis": "redis",
           "sqs": "aws_sqs", "memory": "memory", "filesystem": "filesystem", "mongodb": "mongodb",
           "qpid": "qpid", "kafka": "kafka", "gcpubsub": "gcp_pubsub", "azureservicebus": "servicebus"}

INTERNAL_MARKERS = ("pidbox", "celeryev", "celery_gossip")
"""Celery's control/event/gossip traffic: never traced (it is not pipeline data)."""

OPERATION_NAMES = {"send": "publish", "process": "process", "receive": "receive"}

URL_SCHEMES = {"amqp": "rabbitmq", "pyamqp": "rabbitmq", "amqps": "rabbitmq", "librabbitmq": "rabbitmq",
               "redis": "redis", "rediss": "redis", "sentinel": "redis", "sqs": "aws_sqs", "memory": "memory",
               "filesystem": "filesystem"}

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
def connection_system(connection: object) -> str:
    """``messaging.system`` (rabbitmq, redis, memory, …) of a kombu Connection, from its transport;
    cached on the connection (asked once per message)."""
    cached = getattr(connection, "_pipetrace_system", None)
    if cached is not None:
        return str(cached)
    try:
        driver = str(connection.transport.driver_type)  # type: ignore[attr-defined]
    except Exception:
        driver = "kombu"
    return _remember(connection, SYSTEMS.get(driver, driver))


def app_system(app: object) -> str:
    """``messaging.system`` of an application configured with a broker URL (a Celery app's
    ``conf.broker_url``); cached on the app (asked once per message, and a Celery config lookup is slow)."""
    cached = getattr(app, "_pipetrace_system", None)
    if cached is not None:
        return str(cached)
    try:
        system = url_system(str(app.conf.broker_url or "amqp://"))  # type: ignore[attr-defined]
    except Exception:
        system = "rabbitmq"  # (Celery's default broker)
    return _remember(app, system)


def _remember(owner: object, system: str) -> str:
    """The per-owner cache both readers share: ``system`` kept on ``owner`` when it takes attributes."""
    try:
        owner._pipetrace_system = system  # type: ignore[attr-defined]
    except Exception:
        pass
    return system


def messaging_system(owner: object) -> str:
    """:func:`app_system` of an object with a ``conf`` (a Celery app), else :func:`connection_system`."""
    return app_system(owner) if getattr(owner, "conf", None) is not None else connection_system(owner)


@functools.lru_cache(maxsize=64)
def url_system(url: str) -> str:
    """``messaging.system`` of a kombu broker URL (``amqp://``, ``redis+socket://`` …) from its scheme."""
    scheme = url.split("://", 1)[0].split("+")[0].lower()
    return URL_SCHEMES.get(scheme, scheme)


def is_internal(*names: object) -> bool:
    for name in names:
        text = getattr(name, "name", name)
        if isinstance(text, str) and text and any(m in text for m in INTERNAL_MARKERS):
            return True
    return False


@functools.lru_cache(maxsize=4096)  # a process talks to a handful of queues (and tasks): built once each
def static_attributes(system: str, destination: str, operation: str, routing_key: str | None, adapter: str = "kombu",
                      task: str | None = None) -> MappingProxyType[str, Any]:
    """What every ``operation`` of ``adapter`` on ``destination`` (of ``task``) has in common, read-only:
    copy it to start a span's attributes (copying a dict is cheaper than building one from pairs)."""
    attrs: dict[str, Any] = {
        A.SYSTEM: adapter,
        A.MESSAGING_SYSTEM: system,
        A.MESSAGING_DESTINATION: destination,
        A.MESSAGING_OPERATION_TYPE: operation,
    }
    if adapter == "kombu" or operation != "process":  # a task adapter's "process" would repeat the type
        attrs[A.MESSAGING_OPERATION_NAME] = OPERATION_NAMES.get(operation, operation)
    if system == "rabbitmq" and routing_key is not None:
        attrs["messaging.rabbitmq.destination.routing_key"] = routing_key
    if task is not None:
        attrs[A.TASK_NAME] = task
    return MappingProxyType(attrs)


def base_attributes(system: str, destination: str, operation: str, message_id: object = None,
                    routing_key: str | None = None) -> dict[str, Any]:
    """The OTel messaging attributes of one operation (``send``, ``receive`` or ``process``)."""
    attrs = static_attributes(system, destination, operation, routing_key if system == "rabbitmq" else None).copy()
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
    waited = (now_ns if now_ns is not None else time.time_ns()) - published
    return waited // 1000 / 1000 if waited > 0 else 0.0  # ms, to the µs below (integer steps: no float rounding)


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


def consumer_span(name: str, headers: Mapping[str, Any], attributes: Mapping[str, Any], *, source: str,
                  caller: Context | None = None, links: Callable[[SpanContext | None], Sequence[Link]] | None = None,
                  start_time: int | None = None, root_trace_id: Callable[[], int] | None = None,
                  span_id: int | None = None, plain_attributes: bool = False) -> DeferredSpan:
    """The CONSUMER span of one delivered message: a child of the producer's span from ``headers``, else
    of ``caller``'s current span (a message handled in the caller's process: an eager run), else a new
    root (its trace id from ``root_trace_id()`` when given) with an event saying why the context could not be used.
    ``links(trace)``: links built from the span context the span joins (None for a new root)."""
    parent, reason = parent_span_of(headers, source)
    context, joined = Context(), parent
    if parent is None and caller is not None:
        current_sc = trace.get_current_span(caller).get_span_context()
        if current_sc.is_valid:
            context, reason, joined = caller, None, current_sc
    span = deferred_span(tracer(), name, context=context, parent=parent, kind=SpanKind.CONSUMER, attributes=attributes,
                         links=links(joined) if links is not None else (), start_time=start_time,
                         trace_id=root_trace_id() if joined is None and root_trace_id is not None else None,
                         span_id=span_id,
                         plain_attributes=plain_attributes)
    if reason is not None:
        bad_context_event(span, reason)
    return span


# ---- the run of a producer's trace ---------------------------------------------------------------------
class ProducerRuns(OpenAttempts[int, tuple[str, str]]):
    """Producer side: the run of each trace, so that everything one traced block publishes (several
    messages, a group's members, a chord's header) is one run, named by the first message published in
    the trace (its run id and pipeline). Bounded: oldest traces go first."""

    def claim(self, trace_id: int, run: str, name: str) -> tuple[str, str]:
        """(run id, pipeline) of the trace: the one given if the trace has none yet."""
        found = self.get(trace_id)
        if found is None:
            self.put(trace_id, (run, name))
            return run, name
        return found

    def name_span(self, span: Span) -> None:
        """A span the producer started before its trace's run had an id (a group's or chord's batch span:
        the first member published names the run): give it the run's id and pipeline before it ends."""
        attrs = getattr(span, "attributes", None)
        if attrs is not None and A.PIPELINE_RUN_ID not in attrs:
            known = self.get(span.get_span_context().trace_id)
            if known is not None:
                span.set_attribute(A.PIPELINE_RUN_ID, known[0])
                span.set_attribute(A.PIPELINE_NAME, known[1])


# ---- send spans between two signals ----------------------------------------------------------------------
class Sends(OpenAttempts[str, DeferredSpan]):
    """Send spans kept between a task queue's before- and after-publish signals, by message id. Bounded:
    a publish whose after-signal never came is ended when evicted, marked ``unconfirmed`` (an attribute)."""

    def __init__(self, unconfirmed: str, bound: int = 10_000) -> None:
        super().__init__(bound)
        self.unconfirmed = unconfirmed

    def begin(self, key: str, span: DeferredSpan) -> None:
        for evicted in self.replace(key, span)[1]:  # (a span replaced under its own key is dropped, as before)
            evicted.set_attribute(self.unconfirmed, True)
            evicted.end()

    def end(self, key: str | None) -> None:
        span = self.pop(key) if key else None
        if span is not None:
            span.end()

    def fail(self, key: str | None, exc: BaseException) -> None:
        """The broker refused the message: its span ends as failed."""
        span = self.pop(key) if key else None
        if span is not None:
            live = span.live()
            end_with_error(live, exc)
            live.end()


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


# ---- coexisting with an OpenTelemetry contrib instrumentor of the same library -------------------------
class Coexistence:
    """Who emits the spans when pipetrace and an OpenTelemetry contrib instrumentor (``module``'s
    ``cls``) trace one library in one process: both write the same W3C headers, so across processes
    either side continues the other's trace, but in one process both would emit a span per message.

    The environment variable ``env`` picks: ``replace`` (default) switches the instrumentor off now and
    skips its later ``instrument()`` calls (with an info log); ``defer`` makes pipetrace's handlers stand
    aside (:meth:`deferring`) while the instrumentor is active."""

    def __init__(self, module: str, cls: str, env: str, log: logging.Logger) -> None:
        self.module, self.cls, self.env, self.log = module, cls, env, log
        self.mode = self.read_mode()
        self.may_defer = self.mode == "defer"
        """Whether :meth:`deferring` can ever be true: per-message handlers read this flag first, so
        ``replace`` mode (the default) costs no call per message."""
        self._patched: tuple[Any, Any] | None = None

    def read_mode(self) -> str:
        value = os.environ.get(self.env, "replace").strip().lower()
        return value if value in ("replace", "defer") else "replace"

    def _class(self) -> Any:
        module = sys.modules.get(self.module)
        return getattr(module, self.cls, None) if module is not None else None

    def otel_active(self) -> bool:
        cls = self._class()
        instance = getattr(cls, "_instance", None) if cls is not None else None
        return bool(getattr(instance, "_is_instrumented_by_opentelemetry", False))

    def deferring(self) -> bool:
        """True when pipetrace's spans must stand aside for the instrumentor's."""
        return self.mode == "defer" and self.otel_active()

    def setup(self) -> None:
        """Read the mode; in ``replace`` mode, switch the instrumentor off now and whenever it is enabled."""
        self.mode = self.read_mode()
        self.may_defer = self.mode == "defer"
        if self.mode != "replace" or self._patched is not None:
            return
        try:
            if self.module not in sys.modules and importlib.util.find_spec(self.module) is None:
                return
            cls = getattr(importlib.import_module(self.module), self.cls)
        except (ImportError, ValueError, AttributeError):
            return
        try:
            if self.otel_active():
                cls().uninstrument()
                self.log.info("pipetrace: %s switched off (pipetrace traces it with the same W3C headers; set "
                              "%s=defer to keep its spans instead)", self.module, self.env)
            original, outer = cls._instrument, self

            def _instrument(self: Any, **kwargs: Any) -> None:
                if outer.read_mode() == "defer":
                    original(self, **kwargs)
                    return
                outer.log.info("pipetrace: skipping %s's handlers (pipetrace traces this library in this "
                               "process; set %s=defer to keep them)", outer.module, outer.env)

            self._patched = (cls, original)
            cls._instrument = _instrument
        except Exception as exc:
            self.log.debug("pipetrace: could not coordinate with %s: %r", self.module, exc)

    def teardown(self) -> None:
        if self._patched is not None:
            cls, original = self._patched
            self._patched = None
            cls._instrument = original
