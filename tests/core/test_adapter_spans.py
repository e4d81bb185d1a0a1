"""Span helpers of the adapter API that no other test file covers."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, TraceFlags
from pipetrace.adapter.spans import with_links


def test_with_links_copies_a_finished_span_with_other_links() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    old = Link(SpanContext(1, 2, False, TraceFlags(1)), {"k": "old"})
    span = provider.get_tracer("t").start_span("s", attributes={"a": 1}, links=[old])
    span.add_event("e")
    span.end()
    [done] = exporter.get_finished_spans()
    new = Link(SpanContext(3, 4, False, TraceFlags(1)), {"k": "new"})
    out = with_links(done, [new])
    assert isinstance(out, ReadableSpan) and [lk.attributes for lk in out.links] == [{"k": "new"}]
    assert [lk.attributes for lk in done.links] == [{"k": "old"}]  # the original is unchanged
    for field in ("name", "context", "parent", "resource", "attributes", "kind", "status", "start_time",
                  "end_time", "instrumentation_scope"):
        assert getattr(out, field) == getattr(done, field), field
    assert [e.name for e in out.events] == ["e"]
