"""OTel consistent-probability sampling: thresholds, the ``th`` sub-key of ``ot`` in tracestate.

A trace is kept at probability p when its 56-bit randomness R (the low 56 bits of the trace id, or an
explicit ``rv``) is at least the threshold T = (1 - p) * 2**56. The decision depends on the trace id
alone, so every process of a run decides the same, and a collector downstream that reads ``th`` can
sample further without breaking whole traces.
"""

from __future__ import annotations

from opentelemetry.trace import TraceState

BITS = 56
MAX_THRESHOLD = 1 << BITS
_MASK = MAX_THRESHOLD - 1


def threshold(rate: float) -> int:
    """Rejection threshold for keep probability ``rate`` (0 keeps nothing, 1 keeps everything)."""
    if rate >= 1.0:
        return 0
    if rate <= 0.0:
        return MAX_THRESHOLD
    return min(MAX_THRESHOLD, max(0, MAX_THRESHOLD - round(rate * MAX_THRESHOLD)))  # rate * 2**56 is exact


def th_value(t: int) -> str:
    """``th`` encoding: 14 hex digits with trailing zeros removed (``0`` for always)."""
    if t <= 0:
        return "0"
    return f"{t:014x}".rstrip("0") or "0"


def _ot_fields(trace_state: TraceState | None) -> dict[str, str]:
    raw = trace_state.get("ot") if trace_state is not None else None
    out: dict[str, str] = {}
    for part in (raw or "").split(";"):
        if ":" in part:
            k, v = part.split(":", 1)
            out[k] = v
    return out


def randomness(trace_id: int, trace_state: TraceState | None = None) -> int:
    """The trace's 56-bit randomness: explicit ``rv`` when present, else the trace id's low 56 bits."""
    rv = _ot_fields(trace_state).get("rv")
    if rv and len(rv) == 14:
        try:
            return int(rv, 16)
        except ValueError:
            pass
    return trace_id & _MASK


def keeps(trace_id: int, rate: float, trace_state: TraceState | None = None) -> bool:
    """The run-consistent decision: same trace id and rate → same answer, in every process."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    return randomness(trace_id, trace_state) >= threshold(rate)


def with_threshold(trace_state: TraceState | None, rate: float) -> TraceState:
    """``trace_state`` with ``ot=th:…`` set for ``rate`` (other ``ot`` sub-keys kept).

    A rate of 0 has no ``th`` (nothing is sampled, so nothing carries it)."""
    state = trace_state if trace_state is not None else TraceState()
    if rate <= 0.0:
        return state
    fields = _ot_fields(state)
    fields["th"] = th_value(threshold(rate))
    value = ";".join(f"{k}:{v}" for k, v in fields.items())
    try:
        return state.update("ot", value) if "ot" in state else state.add("ot", value)
    except Exception:  # a full or malformed upstream tracestate: leave it as it was
        return state


def rate_from_trace_state(trace_state: TraceState | None) -> float | None:
    """The sampling probability an upstream ``th`` records, if any (for extrapolating counts)."""
    th = _ot_fields(trace_state).get("th")
    if not th:
        return None
    try:
        t = int(th.ljust(14, "0")[:14], 16)
    except ValueError:
        return None
    return 1.0 - t / MAX_THRESHOLD
