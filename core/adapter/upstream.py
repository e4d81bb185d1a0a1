"""The caller's (upstream) context of a run, read from the run's own metadata.

A run started by another pipeline carries its caller's W3C ``traceparent`` (and optional
``tracestate``) in a field the orchestrator stores with the run: Dagster run tags, Airflow's
``dag_run.conf``. One reader for all of them, so a malformed value is rejected the same way everywhere
(one rate-limited warning from the carrier parser, then the run gets its own derived trace).
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.trace import SpanContext

from ..carriers import span_context_of


def upstream_carrier(fields: object, traceparent: str = "traceparent",
                     tracestate: str = "tracestate") -> dict[str, object] | None:
    """A W3C carrier from a run's metadata mapping (``traceparent`` plus a non-empty string
    ``tracestate``); None when ``fields`` is not a mapping or has no ``traceparent``. The value is not
    checked here: the carrier parser rejects garbage."""
    if not isinstance(fields, Mapping):
        return None
    value = fields.get(traceparent)
    if value is None:
        return None
    carrier: dict[str, object] = {"traceparent": value}
    state = fields.get(tracestate)
    if isinstance(state, str) and state:
        carrier["tracestate"] = state
    return carrier


def upstream_from(fields: object, source: str, traceparent: str = "traceparent",
                  tracestate: str = "tracestate") -> SpanContext | None:
    """The caller's span context carried in ``fields`` (see :func:`upstream_carrier`), or None; ``source``
    names the field in the warning about a malformed value."""
    carrier = upstream_carrier(fields, traceparent, tracestate)
    return span_context_of(carrier, source=source) if carrier is not None else None


__all__ = ["upstream_carrier", "upstream_from"]
