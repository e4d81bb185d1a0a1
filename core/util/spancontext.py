"""``SpanContext``s read and made by their fields, where the OpenTelemetry API allows it.

A ``SpanContext`` is the tuple (trace_id, span_id, is_remote, trace_flags, trace_state, is_valid) in every API
release so far. Where that holds (checked once, at import), code on the per-message path unpacks one in a step
instead of six property calls (:data:`IS_TUPLE`), and makes one whose ids it has already checked with
``tuple.__new__`` instead of ``SpanContext.__new__``, a Python call with keyword arguments
(:data:`FROM_FIELDS`): a task's parent read from its message and its own span's context, once each per task."""

from __future__ import annotations

from opentelemetry.trace import SpanContext, TraceFlags, TraceState

new_tuple = tuple.__new__
DEFAULT_STATE = SpanContext(1, 1, False).trace_state
"""The trace state a ``SpanContext`` made without one holds (one shared object)."""
TRACE_MAX, SPAN_MAX = 2**128 - 1, 2**64 - 1


def fields_by_property(sc: SpanContext) -> tuple[int, int, bool, TraceFlags, TraceState, bool]:
    return sc.trace_id, sc.span_id, sc.is_remote, sc.trace_flags, sc.trace_state, sc.is_valid


def _is_its_fields() -> bool:
    try:
        state = TraceState([("k", "v")])
        sc = SpanContext(0x12, 0x34, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED), trace_state=state)
        return isinstance(sc, tuple) and tuple(sc) == fields_by_property(sc) and len(sc) == 6
    except Exception:  # pragma: no cover - another API
        return False


IS_TUPLE = _is_its_fields()
"""Whether a ``SpanContext`` unpacks to its six fields."""


def _made_of_fields() -> bool:
    try:
        flags = TraceFlags(TraceFlags.SAMPLED)
        for remote in (False, True):
            made = new_tuple(SpanContext, (0x12, 0x34, remote, flags, DEFAULT_STATE, True))
            api = SpanContext(0x12, 0x34, is_remote=remote, trace_flags=flags, trace_state=None)
            if not (type(made) is type(api) and made == api and made.is_valid and made.is_remote is remote
                    and made.trace_state is api.trace_state):
                return False
        return IS_TUPLE
    except Exception:  # pragma: no cover - another API
        return False


FROM_FIELDS = _made_of_fields()
"""Whether ``new_tuple(SpanContext, (trace_id, span_id, is_remote, trace_flags, trace_state, True))`` is the
``SpanContext`` the API makes from those fields, for ids already known valid (non-zero, within 128 and 64 bits)."""
