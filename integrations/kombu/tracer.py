"""Which tracer the messaging adapters use: pipetrace's own, or the provider given to ``instrument()``."""

from __future__ import annotations

import pipetrace
from opentelemetry.trace import Tracer, TracerProvider
from pipetrace.machinery.sdk import span_limits

_provider: TracerProvider | None = None


def set_provider(provider: TracerProvider | None) -> None:
    global _provider
    _provider = provider


def tracer() -> Tracer:
    if _provider is not None:
        return _provider.get_tracer("pipetrace")
    return pipetrace.get_tracer()


def link_limit() -> int:
    """Most links one span keeps on the active provider (the SDK default is 128)."""
    from opentelemetry import trace

    if _provider is None:
        pipetrace.get_tracer()  # configures the provider on first use
    provider = _provider or trace.get_tracer_provider()
    value = getattr(span_limits(provider), "max_links", None)
    return int(value) if isinstance(value, int) and value > 0 else 128
