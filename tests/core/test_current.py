"""``attach_span`` makes a span current exactly as ``context.attach(trace.set_span_in_context(span))`` does, on
the runtime context's variable or through the API; also run on the oldest supported API (sdkmin)."""

from __future__ import annotations

import contextvars

import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from pipetrace.machinery import current

SPAN = NonRecordingSpan(SpanContext(0x1234, 0x5678, is_remote=False, trace_flags=TraceFlags(1)))


def test_the_default_runtime_context_takes_the_one_step_path() -> None:
    assert current._VARIABLE is not None


@pytest.mark.parametrize("one_step", [True, False])
def test_attach_span_is_the_apis_attach(monkeypatch: pytest.MonkeyPatch, one_step: bool) -> None:
    if not one_step:
        monkeypatch.setattr(current, "_VARIABLE", None)

    def run() -> None:
        outer = otel_context.attach(baggage.set_baggage("k", "v"))  # what was current stays in the new context
        before = otel_context.get_current()
        api_token = otel_context.attach(trace.set_span_in_context(SPAN))
        by_api = otel_context.get_current()
        otel_context.detach(api_token)
        token = current.attach_span(SPAN)
        got = otel_context.get_current()
        assert got == by_api and type(got) is type(by_api)
        assert trace.get_current_span() is SPAN and baggage.get_baggage("k") == "v"
        otel_context.detach(token)
        assert otel_context.get_current() == before and trace.get_current_span() is not SPAN
        otel_context.detach(outer)

    contextvars.copy_context().run(run)


def test_nested_attaches_restore_in_order() -> None:
    other = NonRecordingSpan(SpanContext(0x99, 0x98, is_remote=False))

    def run() -> None:
        first = current.attach_span(SPAN)
        second = current.attach_span(other)
        assert trace.get_current_span() is other
        otel_context.detach(second)
        assert trace.get_current_span() is SPAN
        otel_context.detach(first)
        assert trace.get_current_span() is trace.INVALID_SPAN

    contextvars.copy_context().run(run)


def test_the_check_at_import_holds_inside_a_span_too() -> None:
    """Imported while a span is current (a lazy import inside a task), the check still finds the one-step path."""

    def run() -> None:
        token = otel_context.attach(trace.set_span_in_context(SPAN))
        try:
            assert current._runtime_variable() is current._VARIABLE is not None
        finally:
            otel_context.detach(token)

    contextvars.copy_context().run(run)


def test_span_context_in_is_the_apis_reading_of_any_context() -> None:
    """``span_context_in`` gives what ``get_current_span(context).get_span_context()`` gives: for an empty
    Context, one with baggage only, one holding a span, one holding something that is not a span, and None
    (the current context, inside a span and outside)."""
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation import _SPAN_KEY

    contexts: list[Context | None] = [
        Context(), baggage.set_baggage("tenant", "acme", Context()), trace.set_span_in_context(SPAN, Context()),
        Context({_SPAN_KEY: "not a span"}), trace.set_span_in_context(trace.INVALID_SPAN, Context()), None]
    for context in contexts:
        assert current.span_context_in(context) == trace.get_current_span(context).get_span_context()
    with trace.use_span(SPAN):
        assert current.span_context_in(None) is SPAN.get_span_context()
    assert current.span_context_in(Context()) is trace.INVALID_SPAN_CONTEXT
