import json
import logging

import pipetrace
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, trace
from opentelemetry.context import Context
from pipetrace.carriers import extract, inject, span_context_of, unwrap, wrap
from pipetrace.util import ratelimit

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(autouse=True)
def _fresh_ratelimit() -> None:
    ratelimit.reset()


def _sc(ctx: Context | None) -> trace.SpanContext:
    assert ctx is not None
    return trace.get_current_span(ctx).get_span_context()


def test_dict_round_trip_with_tracestate_and_baggage(traced) -> None:
    with pipetrace.get_tracer().start_as_current_span("producer") as span:
        ctx = baggage.set_baggage("tenant", "acme")
        carrier = inject({}, context=ctx)
    assert carrier["traceparent"].startswith("00-")
    assert "baggage" in carrier
    out = extract(carrier)
    assert _sc(out).trace_id == span.get_span_context().trace_id
    assert _sc(out).span_id == span.get_span_context().span_id
    assert baggage.get_baggage("tenant", out) == "acme"


def test_tracestate_survives() -> None:
    out = extract({"traceparent": TP, "tracestate": "vendor=abc,ot=th:8"})
    assert _sc(out).trace_state.get("vendor") == "abc"


def test_message_headers_with_bytes_keys_and_values() -> None:
    out = extract({b"traceparent": TP.encode(), b"other": b"\xff\xfe"})
    assert _sc(out).span_id == 0xB7AD6B7169203331


def test_header_names_are_case_insensitive() -> None:
    assert extract({"Traceparent": TP}) is not None


def test_envelope_round_trip_is_json(traced) -> None:
    with pipetrace.get_tracer().start_as_current_span("p") as span:
        env = wrap({"rows": [1, 2, 3]})
    env = json.loads(json.dumps(env))
    value, ctx = unwrap(env)
    assert value == {"rows": [1, 2, 3]}
    assert _sc(ctx).span_id == span.get_span_context().span_id


def test_unwrap_leaves_other_values_alone() -> None:
    for value in (None, 1, "x", [1], {"value": 2}, {"__pipetrace__": 2, "value": 1}):
        assert unwrap(value) == (value, None)


@pytest.mark.parametrize("carrier", [
    None, 42, "traceparent", [("traceparent", TP)], {},
    {"traceparent": "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x"},
    {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"},
    {"traceparent": "00-0AF7651916CD43DD8448EB211C80319G-b7ad6b7169203331-01"},
    {"traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01"},
    {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"},
    {"traceparent": "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    {"traceparent": 12345}, {"traceparent": None}, {"traceparent": ["a"]},
    {b"traceparent": b"\xff\xfe\xfd"},
    {"traceparent": "00-" + "a" * 1_000_000},
    {"traceparent": TP[:20] + "\x00\x01" + TP[22:]},
    {1: 2, None: 3},
], ids=repr)
def test_malformed_returns_none(carrier: object) -> None:
    assert extract(carrier) is None


def test_invalid_baggage_does_not_break_trace_context() -> None:
    out = extract({"traceparent": TP, "baggage": "=;;;,,,\x00" * 50})
    assert _sc(out).is_valid
    assert extract({"traceparent": TP, "baggage": "k=" + "v" * 2_000_000}) is not None


def test_warnings_are_rate_limited_per_source(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pipetrace")
    for _ in range(50):
        extract({"traceparent": "garbage"}, source="queue-a")
        extract({"traceparent": "garbage"}, source="queue-b")
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "queue-a" in m]) == 1
    assert len([m for m in messages if "queue-b" in m]) == 1


def test_span_context_of_accepts_every_form(traced) -> None:
    with pipetrace.get_tracer().start_as_current_span("p") as span:
        carrier = inject()
        env = wrap(1)
    sc = span.get_span_context()
    ctx = extract(carrier)
    for form in (carrier, env, ctx, sc, carrier["traceparent"]):
        got = span_context_of(form)
        assert got is not None and got.span_id == sc.span_id
    assert span_context_of(object()) is None


values = st.one_of(
    st.text(max_size=80), st.binary(max_size=80), st.integers(), st.none(), st.floats(),
    st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    st.from_regex(r"\A[0-9a-f]{2}-[0-9a-fA-Fz]{30,34}-[0-9a-f]{14,18}-[0-9a-f]{1,3}\Z"),
)
keys = st.one_of(st.sampled_from(["traceparent", "tracestate", "baggage", "Traceparent", b"traceparent"]),
                 st.text(max_size=10), st.binary(max_size=10), st.integers())


@settings(max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(values, st.dictionaries(keys, values, max_size=6)))
def test_fuzz_extract_and_unwrap_never_raise(carrier: object) -> None:
    out = extract(carrier, source="fuzz")
    assert out is None or trace.get_current_span(out).get_span_context().is_valid
    unwrap(carrier)
    unwrap({"__pipetrace__": 1, "value": 1, "context": carrier})
    span_context_of(carrier)


# --- the W3C fast path gives what the propagators give ------------------------------------------------

W3C_CARRIERS: list[dict[str, object]] = [
    {"traceparent": TP},
    {"traceparent": TP, "tracestate": "ot=th:8,vendor=x"},
    {"traceparent": TP, "baggage": "tenant=acme"},
    {"traceparent": " " + TP + "\t"},
    {"traceparent": "ff" + TP[2:]},
    {"traceparent": TP + "-extra"},
    {"traceparent": "01" + TP[2:] + "-future"},
    {"traceparent": "00-" + "0" * 32 + "-b7ad6b7169203331-01"},
    {"traceparent": TP[:-2] + "00"},
    {"traceparent": TP.upper()},
    {"traceparent": TP, "tracestate": "k=" + "v" * 600},
    {"traceparent": TP, "tracestate": "not a tracestate"},
    {"traceparent": "x" * 600},
    {"traceparent": TP.encode()},
    {"Traceparent": TP},
    {"other": "header"},
]


def _both_ways(carrier: dict[str, object]) -> tuple[Context | None, Context | None]:
    from opentelemetry import propagate
    from pipetrace import carriers

    textmap = propagate.get_global_textmap()
    carriers.use_w3c_fast_path(textmap)
    fast = extract(dict(carrier), source="fast")
    carriers.use_w3c_fast_path(None)
    slow = extract(dict(carrier), source="slow")
    carriers.use_w3c_fast_path(textmap)
    return fast, slow


@pytest.mark.parametrize("carrier", W3C_CARRIERS, ids=range(len(W3C_CARRIERS)))
def test_extract_span_context_is_the_span_context_extract_finds(traced, carrier: dict[str, object]) -> None:
    from pipetrace.carriers import extract_span_context

    ctx = extract(dict(carrier), source="ctx")
    got = extract_span_context(dict(carrier), source="sc")
    if ctx is None:
        assert got is None
    else:
        assert got == _sc(ctx) and got.is_remote


def test_extract_span_context_of_garbage_is_none(traced) -> None:
    from pipetrace.carriers import extract_span_context

    for garbage in (None, "traceparent", 42, {"traceparent": 7}, {"traceparent": "00-zz-yy-01"}, [("a", "b")]):
        assert extract_span_context(garbage, source="garbage") is None


@pytest.mark.parametrize("carrier", W3C_CARRIERS, ids=range(len(W3C_CARRIERS)))
def test_w3c_fast_extract_matches_the_propagators(traced, carrier: dict[str, object]) -> None:
    fast, slow = _both_ways(carrier)
    assert (fast is None) == (slow is None)
    if fast is not None and slow is not None:
        assert _sc(fast) == _sc(slow)
        assert baggage.get_all(fast) == baggage.get_all(slow)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(version=st.sampled_from(["00", "01", "ff", "0g", "0"]), trace_hex=st.text("0123456789abcdefA", min_size=31,
       max_size=33), span_hex=st.text("0123456789abcdef", min_size=15, max_size=17), flags=st.text("0123456789af",
       min_size=1, max_size=3), tail=st.sampled_from(["", "-x", " ", "\n"]),
       state=st.one_of(st.none(), st.text(max_size=40)))
def test_fuzz_w3c_fast_extract_matches_the_propagators(traced, version: str, trace_hex: str, span_hex: str,
                                                       flags: str, tail: str, state: str | None) -> None:
    carrier: dict[str, object] = {"traceparent": f"{version}-{trace_hex}-{span_hex}-{flags}{tail}"}
    if state is not None:
        carrier["tracestate"] = state
    fast, slow = _both_ways(carrier)
    assert (fast is None) == (slow is None)
    if fast is not None and slow is not None:
        assert _sc(fast) == _sc(slow)


def test_w3c_fast_inject_matches_the_propagators(traced) -> None:
    from opentelemetry import propagate
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
    from pipetrace import carriers
    from pipetrace.carriers import inject_span_context

    textmap = propagate.get_global_textmap()
    for state in (TraceState(), TraceState([("ot", "th:8")])):
        sc = SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(1), trace_state=state)
        for ctx in (Context(), baggage.set_baggage("tenant", "acme", Context())):
            full = trace.set_span_in_context(NonRecordingSpan(sc), ctx)
            carriers.use_w3c_fast_path(textmap)
            fast, fast_sc = inject({}, full), inject_span_context({}, sc, ctx)
            carriers.use_w3c_fast_path(None)
            slow, slow_sc = inject({}, full), inject_span_context({}, sc, ctx)
            carriers.use_w3c_fast_path(textmap)
            assert fast == slow == fast_sc == slow_sc
            assert ("baggage" in fast) == bool(baggage.get_all(ctx))


def test_w3c_fast_path_is_off_when_other_propagators_are_configured(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path) -> None:
    from pipetrace import carriers

    monkeypatch.setenv("OTEL_PROPAGATORS", "tracecontext")
    pipetrace.configure(home=tmp_path, exporters="none")
    assert carriers._w3c_fast()  # noqa: SLF001
    from opentelemetry import propagate
    from opentelemetry.propagators.composite import CompositePropagator

    propagate.set_global_textmap(CompositePropagator([]))  # somebody else's propagator wins
    assert not carriers._w3c_fast()  # noqa: SLF001
    assert extract({"traceparent": TP}) is None
    pipetrace.shutdown()


def test_inject_span_context_reads_baggage_from_the_given_or_current_context(traced,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry import context as otel_context
    from opentelemetry.trace import SpanContext, TraceFlags
    from pipetrace.carriers import inject_span_context

    sc = SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(1))
    token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        assert "tenant=acme" in inject_span_context({}, sc)["baggage"]  # None: the current context's
        asked: list[object] = []
        real = baggage.get_all
        monkeypatch.setattr(baggage, "get_all", lambda ctx=None: asked.append(ctx) or real(ctx))
        empty = inject_span_context({}, sc, Context())  # an empty context: nothing to look up
        assert "baggage" not in empty and empty["traceparent"].endswith("-0000000000000def-01") and not asked
    finally:
        otel_context.detach(token)


def _one_off(size: int) -> st.SearchStrategy[str]:
    """``size`` lowercase hex digits but one, which is something ``int(_, 16)`` may still take."""
    return st.builds(lambda digits, at, odd: digits[:at] + odd + digits[at + 1:],
                     st.text("0123456789abcdef", min_size=size, max_size=size), st.integers(0, size - 1),
                     st.sampled_from(["A", "F", "-", "_", " ", "+", "x", "\t", "g", "\u0660"]))


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(version=st.sampled_from(["00", "00", "01", "0A", " 0"]),
       trace_hex=st.one_of(st.text("0123456789abcdef", min_size=32, max_size=32), _one_off(32)),
       span_hex=st.one_of(st.text("0123456789abcdef", min_size=16, max_size=16), _one_off(16)),
       flags=st.text("0123456789afF -", min_size=2, max_size=2), sep=st.sampled_from(["-", "-", "_"]))
def test_fuzz_whole_length_traceparents_read_as_the_propagators_read_them(
        traced, version: str, trace_hex: str, span_hex: str, flags: str, sep: str) -> None:
    """A 55-character ``traceparent`` of version 00 is matched whole, anything else as before: the span context
    ``extract_span_context`` finds, with the fast path on, is the propagators' (None when they find none)."""
    from opentelemetry import propagate
    from opentelemetry.trace import TraceFlags
    from pipetrace import carriers
    from pipetrace.carriers import extract_span_context

    header = f"{version}-{trace_hex}{sep}{span_hex}-{flags}"
    assert len(header) == 55
    textmap = propagate.get_global_textmap()
    carriers.use_w3c_fast_path(textmap)
    fast = extract_span_context({"traceparent": header}, source="fast")
    carriers.use_w3c_fast_path(None)
    slow = extract_span_context({"traceparent": header}, source="slow")
    carriers.use_w3c_fast_path(textmap)
    assert fast == slow
    if fast is not None:
        assert fast.is_remote and fast.is_valid and type(fast.trace_flags) is TraceFlags


def test_a_whole_length_traceparent_is_read_without_the_general_pattern(traced, monkeypatch: pytest.MonkeyPatch
                                                                         ) -> None:
    """The common form takes the whole-match path; a padded or longer one still takes the general pattern."""
    from pipetrace import carriers
    from pipetrace.carriers import extract_span_context

    searched: list[str] = []
    general = carriers._TRACEPARENT

    class Spy:
        def search(self, text: str) -> object:
            searched.append(text)
            return general.search(text)

    monkeypatch.setattr(carriers, "_TRACEPARENT", Spy())
    common = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    got = extract_span_context({"traceparent": common})
    assert got is not None and got.trace_id == 0x0AF7651916CD43DD8448EB211C80319C and got.span_id == 0xB7AD6B7169203331
    assert searched == []
    padded = extract_span_context({"traceparent": f" {common}\t"})
    assert padded == got and searched == [f" {common}\t"]
