"""W3C context carriers: plain dicts, message headers and JSON envelopes.

Everything here tolerates garbage: malformed, oversized or mistyped input returns ``None`` and logs at
most one warning per minute per source, never an exception into the traced code.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from opentelemetry import baggage, propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import INVALID_SPAN_CONTEXT, NonRecordingSpan, SpanContext, TraceFlags, TraceState

from .util.ratelimit import warn_once_per
from .util.spancontext import DEFAULT_STATE, FROM_FIELDS, IS_TUPLE, fields_by_property, new_tuple

log = logging.getLogger("pipetrace.carriers")

ENVELOPE_KEY = "__pipetrace__"
ENVELOPE_VERSION = 1
MAX_VALUE_CHARS = 8192  # W3C baggage's own limit; traceparent/tracestate are far shorter
MAX_ENTRIES = 4096  # a carrier with more entries than this is not a trace carrier
MAX_TRACEPARENT_CHARS = 512  # the SDK's W3C propagator's limits
MAX_TRACESTATE_CHARS = 512
_TRACEPARENT = re.compile(r"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:(-.*)|[ \t]*)$")
_TRACEPARENT_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
"""The form every version-00 writer sends (no padding, nothing after the flags), matched whole: what
``_TRACEPARENT`` finds in it, in about four fifths of the instructions (no optional parts to try)."""


class _W3C:
    textmap: TextMapPropagator | None = None
    """The global propagator pipetrace installed when it is plain W3C (``tracecontext`` and maybe
    ``baggage``): while it is still the global one, a message with a well-formed ``traceparent`` and no
    baggage is read and written here directly — the same result as the propagators', at a fifth of
    the cost, on the per-message path. Anything else takes the propagators' path. Header names are
    matched in lower case, as every W3C writer (pipetrace, OTel instrumentations) writes them; a carrier
    with only a capitalised ``Traceparent`` still goes the propagators' (case-insensitive) way."""


def use_w3c_fast_path(textmap: TextMapPropagator | None) -> None:
    _W3C.textmap = textmap


def _w3c_fast() -> bool:
    return _W3C.textmap is not None and propagate.get_global_textmap() is _W3C.textmap


def _write_w3c(target: dict[str, Any], sc: SpanContext) -> None:
    # its fields unpacked, not read by property (three Python calls), once per message
    trace_id, span_id, _, flags, state, _ = sc if IS_TUPLE else fields_by_property(sc)
    if not trace_id and sc == INVALID_SPAN_CONTEXT:  # the int first: a full compare is costly when cold
        return
    # (% formatting: about a third fewer instructions than an f-string with format specs, callgrind-counted)
    target["traceparent"] = "00-%032x-%016x-%02x" % (trace_id, span_id, flags)  # noqa: UP031
    if state:
        target["tracestate"] = state.to_header()


def _w3c_inject(target: dict[str, Any], context: Context | None) -> bool:
    if baggage.get_all(context):
        return False
    _write_w3c(target, trace.get_current_span(context).get_span_context())
    return True


def _fast_span_context(carrier: object) -> SpanContext | None:
    """The span context of a well-formed W3C carrier dict without baggage, read directly; None sends it
    the propagators' way (which also logs what is wrong with it)."""
    if type(carrier) is not dict or _W3C.textmap is None or propagate.get_global_textmap() is not _W3C.textmap:
        return None  # (what _w3c_fast() says, without the call: this runs once per message)
    try:
        return _w3c_span_context(carrier)
    except Exception:
        return None


def _w3c_span_context(carrier: dict[Any, Any]) -> SpanContext | None:
    header = carrier.get("traceparent")
    if (type(header) is not str or len(header) > MAX_TRACEPARENT_CHARS or "baggage" in carrier
            or len(carrier) > MAX_ENTRIES):
        return None
    match = _TRACEPARENT_00.fullmatch(header) if len(header) == 55 else None
    if match is not None:
        trace_hex, span_hex, flags = match.groups()
    else:
        match = _TRACEPARENT.search(header)
        if match is None:
            return None
        version, trace_hex, span_hex, flags, rest = match.groups()
        if version == "ff" or (version == "00" and rest):
            return None
    if trace_hex == "0" * 32 or span_hex == "0" * 16:
        return None
    raw_state = carrier.get("tracestate")
    state = None
    if raw_state is not None:
        if type(raw_state) is not str or len(raw_state) > MAX_TRACESTATE_CHARS:
            return None
        state = TraceState.from_header([raw_state])
    trace_flags = _FLAGS[flags]  # (two lowercase hex digits, as every key there)
    if FROM_FIELDS:  # ids non-zero (above) and of 32 and 16 hex digits: valid, as SpanContext.__new__ would find
        return new_tuple(SpanContext, (int(trace_hex, 16), int(span_hex, 16), True, trace_flags,
                                       DEFAULT_STATE if state is None else state, True))
    return SpanContext(int(trace_hex, 16), int(span_hex, 16), is_remote=True, trace_flags=trace_flags,
                       trace_state=state)


_FLAGS: dict[str, TraceFlags] = {f"{value:02x}": TraceFlags(value) for value in range(256)}
"""The ``TraceFlags`` of each flags field (two lowercase hex digits), made once."""


def inject(carrier: dict[str, Any] | None = None, context: Context | None = None) -> dict[str, Any]:
    """Write the current (or given) context into ``carrier`` through the global propagators."""
    target: dict[str, Any] = {} if carrier is None else carrier
    try:
        if _w3c_fast() and _w3c_inject(target, context):
            return target
        propagate.inject(target, context=context)
    except Exception as exc:  # a broken propagator must not break the producer
        warn_once_per(log, "inject", "pipetrace: could not inject trace context: %r", exc)
    return target


def inject_span_context(carrier: dict[str, Any], span_context: SpanContext,
                        context: Context | None = None) -> dict[str, Any]:
    """Write ``span_context`` as the current span of ``context`` (default: the current context, for
    its baggage) into ``carrier``: for a span that is never made current, such as a publish."""
    try:
        # an empty context (a producer outside any span, the common case) has no baggage to look up
        if _w3c_fast() and ((context is not None and not context) or not baggage.get_all(context)):
            _write_w3c(carrier, span_context)
            return carrier
        propagate.inject(carrier, context=trace.set_span_in_context(NonRecordingSpan(span_context), context))
    except Exception as exc:
        warn_once_per(log, "inject", "pipetrace: could not inject trace context: %r", exc)
    return carrier


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def _clean(carrier: object, source: str) -> dict[str, str] | None:
    if not isinstance(carrier, Mapping):
        if carrier is not None:
            warn_once_per(log, source, "pipetrace: ignoring trace carrier of type %s from %s",
                          type(carrier).__name__, source)
        return None
    fields = {f.lower() for f in propagate.get_global_textmap().fields}
    clean: dict[str, str] = {}
    problems: list[str] = []
    try:
        items = list(carrier.items())[:MAX_ENTRIES]
    except Exception as exc:
        warn_once_per(log, source, "pipetrace: unreadable trace carrier from %s: %r", source, exc)
        return None
    for raw_key, raw_value in items:
        key = _text(raw_key)
        if key is None or key.lower() not in fields:
            continue
        value = _text(raw_value)
        if value is None:
            problems.append(f"{key}: not text")
            continue
        if len(value) > MAX_VALUE_CHARS:
            problems.append(f"{key}: {len(value)} chars")
            continue
        clean[key.lower()] = value
    if problems:
        warn_once_per(log, source, "pipetrace: ignored malformed trace headers from %s (%s)",
                      source, "; ".join(problems[:5]))
    return clean


def extract(carrier: object, source: str = "carrier") -> Context | None:
    """The context in ``carrier``, or ``None`` when it holds no valid span context."""
    fast = _fast_span_context(carrier)
    if fast is not None:
        return trace.set_span_in_context(NonRecordingSpan(fast), Context())
    return _propagators_extract(carrier, source)


def extract_span_context(carrier: object, source: str = "carrier") -> SpanContext | None:
    """The remote span context in ``carrier`` (what :func:`extract` finds, without building a Context:
    a message consumer that starts its span from it needs only this), or ``None``."""
    fast = _fast_span_context(carrier)
    if fast is not None:
        return fast
    ctx = _propagators_extract(carrier, source)
    return None if ctx is None else trace.get_current_span(ctx).get_span_context()


def _propagators_extract(carrier: object, source: str) -> Context | None:
    clean = _clean(carrier, source)
    if not clean:
        return None
    try:
        ctx = propagate.extract(clean, context=Context())
    except Exception as exc:
        warn_once_per(log, source, "pipetrace: malformed trace context from %s: %r", source, exc)
        return None
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        if "traceparent" in clean:
            warn_once_per(log, source, "pipetrace: invalid traceparent from %s: %.80r", source, clean["traceparent"])
        return None
    return ctx


def span_context_of(carrier_or_context: object, source: str = "carrier") -> SpanContext | None:
    """The remote span context carried by a dict/headers/envelope, a Context or a SpanContext."""
    if isinstance(carrier_or_context, SpanContext):
        return carrier_or_context if carrier_or_context.is_valid else None
    if isinstance(carrier_or_context, Context):
        ctx: Context | None = carrier_or_context
    elif is_envelope(carrier_or_context):
        ctx = unwrap(carrier_or_context, source)[1]
    elif isinstance(carrier_or_context, str):
        ctx = extract({"traceparent": carrier_or_context}, source)
    else:
        ctx = extract(carrier_or_context, source)
    if ctx is None:
        return None
    sc = trace.get_current_span(ctx).get_span_context()
    return sc if sc.is_valid else None


def is_envelope(obj: object) -> bool:
    return isinstance(obj, Mapping) and obj.get(ENVELOPE_KEY) == ENVELOPE_VERSION and "value" in obj


def wrap(value: Any, context: Context | None = None) -> dict[str, Any]:
    """An envelope ``{"__pipetrace__": 1, "value": value, "context": {...}}`` (JSON-serialisable
    whenever ``value`` is)."""
    return {ENVELOPE_KEY: ENVELOPE_VERSION, "value": value, "context": inject({}, context)}


def unwrap(obj: Any, source: str = "envelope") -> tuple[Any, Context | None]:
    """``(value, context)`` from an envelope; any other object comes back unchanged with ``None``."""
    try:
        if not is_envelope(obj):
            return obj, None
        return obj["value"], extract(obj.get("context"), source)
    except Exception as exc:
        warn_once_per(log, source, "pipetrace: unreadable envelope from %s: %r", source, exc)
        return obj, None
