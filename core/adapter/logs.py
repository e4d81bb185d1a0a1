"""Log records that carry the attempt span's ids, where the orchestrator logs through ``structlog``
(Airflow's task logs merge structlog's context variables into every record): a log line then finds its
span, and a span its log lines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.trace import Span


def bind_span_ids(span: Span) -> Mapping[str, Any]:
    """Bind ``trace_id``/``span_id`` (hex) of ``span`` to the logs of this context; returns the tokens
    :func:`unbind_span_ids` takes (empty when nothing was bound: no structlog, an invalid span)."""
    try:
        import structlog

        sc = span.get_span_context()
        if not sc.is_valid:
            return {}
        return structlog.contextvars.bind_contextvars(trace_id=f"{sc.trace_id:032x}", span_id=f"{sc.span_id:016x}")
    except Exception:
        return {}


def unbind_span_ids(tokens: Mapping[str, Any] | None) -> None:
    """Restore what the logs of this context carried before :func:`bind_span_ids`."""
    if not tokens:
        return
    try:
        import structlog

        structlog.contextvars.reset_contextvars(**tokens)
    except Exception:
        pass


__all__ = ["bind_span_ids", "unbind_span_ids"]
