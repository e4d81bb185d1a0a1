"""Every reach into the OpenTelemetry SDK's private state outside the span record, in one place.

Why: the SDK offers no public way to read or remove a provider's processors, to change the resource of
tracers it already handed out, or to read its span limits; pipetrace needs each once. Kept here, behind
plain functions, the rest of pipetrace never names a private SDK attribute (``tests/core/test_layers.py``
checks it), and a new SDK release that moves one breaks exactly one small module, which the sdkmin and
core envs test at both ends of the accepted range (see pyproject.toml).
"""

from __future__ import annotations

from contextvars import Token
from typing import Any

from opentelemetry import context as context_api
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, SpanProcessor, TracerProvider, sampling

from .ids import DerivedIdGenerator


def suppress_instrumentation() -> Token[Context]:
    """Attach a context in which instrumentations make no spans (the key the SDK's BatchSpanProcessor sets
    around an export); returns the token to ``opentelemetry.context.detach``."""
    return context_api.attach(context_api.set_value(context_api._SUPPRESS_INSTRUMENTATION_KEY, True))


def processors_of(tracer_or_provider: Any) -> tuple[SpanProcessor, ...] | None:
    """The span processors behind an SDK tracer or provider (the same tuple object until one is added or
    removed, so callers may cache what they derive from it); None for anything else."""
    try:  # (an SDK tracer, asked on every span's start and end: no getattr calls)
        return tracer_or_provider.span_processor._span_processors  # type: ignore[no-any-return]
    except AttributeError:
        chain = getattr(tracer_or_provider, "_active_span_processor", None)  # a provider
        return getattr(chain, "_span_processors", None)


def remove_processor(provider: TracerProvider, processor: SpanProcessor) -> None:
    """Detach ``processor`` from ``provider`` (the SDK can only add); not found or another SDK: nothing."""
    chain = getattr(provider, "_active_span_processor", None)
    procs = getattr(chain, "_span_processors", None)
    lock = getattr(chain, "_lock", None)
    if procs is None:
        return
    if lock is not None:
        with lock:
            chain._span_processors = tuple(p for p in chain._span_processors if p is not processor)  # type: ignore[union-attr]
    else:  # pragma: no cover - another SDK
        chain._span_processors = tuple(p for p in procs if p is not processor)  # type: ignore[union-attr]


def update_resource(provider: TracerProvider, resource: Resource) -> None:
    """Merge ``resource`` into the provider's, for the tracers it already handed out too (the service name
    of a component named after start-up, a new pid after fork)."""
    provider._update_resource(resource)  # noqa: SLF001


def learn_derived_ids(provider: TracerProvider) -> None:
    """Make a provider pipetrace did not create able to take derived ids (its own generator stays the
    fallback for random ones)."""
    if not isinstance(provider.id_generator, DerivedIdGenerator):
        provider.id_generator = DerivedIdGenerator(provider.id_generator)  # type: ignore[assignment]


def apply_sampler(provider: TracerProvider, sampler: sampling.Sampler) -> None:
    """Set the sampler on the provider and on the tracers it already handed out (the SDK caches one
    tracer per scope and each keeps the sampler it was made with)."""
    provider.sampler = sampler
    tracers = getattr(provider, "_tracers", None)
    lock = getattr(provider, "_tracers_lock", None)
    if isinstance(tracers, dict) and lock is not None:
        with lock:
            for tracer in tracers.values():
                tracer.sampler = sampler


def span_limits(provider: Any) -> SpanLimits | None:
    """The provider's span limits (link and attribute counts); None when it is not the SDK's."""
    limits = getattr(provider, "_span_limits", None)
    return limits if isinstance(limits, SpanLimits) else None


def plain_attributes(attributes: Any) -> Any:
    """An attribute mapping of a finished span, event or link as the plain dict under it, not copied:
    the SDK's ``BoundedAttributes`` (and the read-only proxy a span hands out) are walked key by key in
    Python (~3.7 µs for 12 attributes, against ~0.4 µs for the dict), and the export thread reads each
    span's attributes several times (redaction, store row, OTLP encoding). Callers only read it: a
    finished span's attributes no longer change. Anything else comes back as it is (``{}`` for None)."""
    if type(attributes) is dict:
        return attributes
    inner = getattr(attributes, "_dict", None)
    if type(inner) is dict:
        return inner
    return attributes if attributes is not None else {}


def span_attributes(span: Any) -> Any:
    """``span.attributes`` of a finished SDK span (a ``ReadableSpan``) as :func:`plain_attributes` does."""
    raw = getattr(span, "_attributes", None)
    if raw is not None:
        return plain_attributes(raw)
    attributes = span.attributes
    return attributes if attributes is not None else {}
