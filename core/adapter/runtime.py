"""What adapters need from pipetrace's process set-up: the tracer provider they were given, span
transforms added once, flushing, and whether the local store already holds an attempt's span."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from typing import Any

from opentelemetry import trace

from ..processing import runtime
from ..processing.runtime import force_flush, get_tracer, settings
from ..util.ratelimit import warn_once_per

log = logging.getLogger("pipetrace.adapter")


def add_transform_once(transform: Any) -> bool:
    """Add a span transform to the processing chain unless it is there already; True if added."""
    if runtime.has_transform(transform):
        return False
    runtime.add_transform(transform)
    return True


def drop_scopes(refused: Any) -> None:
    """Spans of instrumentation scopes ``refused(name)`` is true for are not wanted: pipetrace's own
    provider gives their tracers no-op ones, and a transform drops any made anyway (a provider not ours,
    a tracer resolved before this call). Idempotent."""
    runtime.refuse_scopes(refused)
    add_transform_once(_scope_filters.setdefault(refused, _scope_filter(refused)))


_scope_filters: dict[Any, Any] = {}


def _scope_filter(refused: Any) -> Any:
    def drop_refused_scope(span: Any) -> Any:
        name = getattr(getattr(span, "instrumentation_scope", None), "name", "") or ""
        return None if runtime.is_refused(name, (refused,)) else span

    return drop_refused_scope


def use_provider(provider: Any) -> None:
    """Make ``provider`` the global one and pipetrace's (its processing chain is added to it)."""
    if trace.get_tracer_provider() is not provider:
        trace.set_tracer_provider(provider)
    if not runtime.is_configured() or runtime.provider() is not provider:
        runtime.configure()


@functools.lru_cache(maxsize=16)
def _tracer_of(provider: Any, *args: Any) -> Any:
    return provider.get_tracer(*args)


def cached_get_tracer(wrapped: Any, _: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A wrapt wrapper of ``opentelemetry.trace.get_tracer`` as a library imported it, for a library that
    looks its tracer up per run (Prefect: ~12 µs a task run): the global provider gives it the same
    tracer for the same (name, version), so it is made once per provider."""
    if kwargs or len(args) > 2:
        return wrapped(*args, **kwargs)
    return _tracer_of(trace.get_tracer_provider(), *args)


def stored_span_ids(trace_id: int, span_ids: Iterable[int]) -> set[str]:
    """Which of these spans (hex ids) the local store already holds, after flushing this process's own
    spans to it; empty when there is no local store (nothing is known) or on any error (logged)."""
    wanted = list(span_ids)
    if not wanted:
        return set()
    try:
        current = settings()
        if "store" not in current.exporters:
            return set()
        force_flush(2, exporters=("store",))
        from ..store import SpanStore
        from ..store.queries import spans_by_ids

        pairs = [(f"{trace_id:032x}", f"{span_id:016x}") for span_id in wanted]
        return {span.span_id for span in spans_by_ids(SpanStore(current.store_path), pairs)}
    except Exception as exc:
        warn_once_per(log, "adapter-stored", "pipetrace: could not check stored spans: %r", exc)
        return set()


__all__ = ["add_transform_once", "cached_get_tracer", "drop_scopes", "force_flush", "get_tracer", "stored_span_ids",
           "use_provider"]
