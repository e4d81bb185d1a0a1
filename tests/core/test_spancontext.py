"""SpanContexts read and made by their fields (``pipetrace.util.spancontext``) are the API's own, and the W3C
fast path's parent context is the one ``SpanContext(...)`` makes; also run on the oldest supported API (sdkmin)."""

from __future__ import annotations

import pytest
from opentelemetry.trace import SpanContext, TraceFlags, TraceState
from pipetrace import carriers
from pipetrace.util import spancontext

TRACE, SPAN = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331


def test_the_installed_api_makes_span_contexts_of_their_fields() -> None:
    assert spancontext.IS_TUPLE and spancontext.FROM_FIELDS


@pytest.mark.parametrize("remote", [True, False])
@pytest.mark.parametrize("state", [None, TraceState([("k", "v")])])
def test_a_span_context_made_of_its_fields_is_the_apis(remote: bool, state: TraceState | None) -> None:
    flags = TraceFlags(TraceFlags.SAMPLED)
    made = spancontext.new_tuple(SpanContext, (TRACE, SPAN, remote, flags, state or spancontext.DEFAULT_STATE, True))
    api = SpanContext(TRACE, SPAN, is_remote=remote, trace_flags=flags, trace_state=state)
    assert type(made) is SpanContext and made == api
    assert spancontext.fields_by_property(made) == spancontext.fields_by_property(api)
    assert made.trace_state is api.trace_state or made.trace_state == api.trace_state


@pytest.mark.parametrize("from_fields", [True, False])
@pytest.mark.parametrize("flags", ["00", "01", "03", "ff"])
@pytest.mark.parametrize("tracestate", [None, "rojo=00f067aa0ba902b7"])
def test_the_w3c_fast_path_parent_is_the_span_context_the_api_makes(
        monkeypatch: pytest.MonkeyPatch, from_fields: bool, flags: str, tracestate: str | None) -> None:
    monkeypatch.setattr(carriers, "FROM_FIELDS", from_fields)
    carrier = {"traceparent": f"00-{TRACE:032x}-{SPAN:016x}-{flags}"}
    if tracestate is not None:
        carrier["tracestate"] = tracestate
    got = carriers._w3c_span_context(carrier)
    state = TraceState.from_header([tracestate]) if tracestate is not None else None
    want = SpanContext(TRACE, SPAN, is_remote=True, trace_flags=TraceFlags(int(flags, 16)), trace_state=state)
    assert got is not None and type(got) is SpanContext and got == want
    assert type(got.trace_flags) is TraceFlags and got.trace_flags.sampled == want.trace_flags.sampled
    assert got.is_remote and got.is_valid
    if tracestate is None:
        assert got.trace_state is want.trace_state  # the API's one default object
    # a second read of the same flags gives the same TraceFlags object (made once)
    again = carriers._w3c_span_context(dict(carrier))
    assert again is not None and again.trace_flags is got.trace_flags
