"""Lazy spans (pipetrace.machinery.handle.LazySpan): a span made when first needed or when it ends is the span
an eager start makes, and no flush loses one."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider, sampling
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pipetrace.machinery.handle import LazySpan
from pipetrace.machinery.handle import begin_span as begin
from pipetrace.machinery.ids import DerivedIdGenerator
from pipetrace.processing.processors import ExportQueue, PipelineProcessor
from pipetrace.util import ratelimit

START = 1_700_000_000_000_000_000


class _Recorder(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def _sdk_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider(id_generator=DerivedIdGenerator(), sampler=sampling.ParentBased(sampling.ALWAYS_ON),
                              shutdown_on_exit=False)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _pipeline_provider() -> tuple[TracerProvider, PipelineProcessor, _Recorder]:
    provider = TracerProvider(id_generator=DerivedIdGenerator(), shutdown_on_exit=False)
    exporter = _Recorder()
    processor = PipelineProcessor([ExportQueue(exporter, name="store", interval_s=0.01)])
    provider.add_span_processor(processor)
    return provider, processor, exporter


def _builder(tracer: Any, calls: list[int], name: str = "task t") -> Any:
    def build() -> Any:
        calls.append(1)
        return begin(tracer, name, kind=SpanKind.CONSUMER, attributes={"a": "x", "n": 1}, context=Context(),
                     trace_id=0xABC, span_id=0xDEF, start_time=START, plain_attributes=True)
    return build


def test_nothing_is_made_until_needed_and_the_context_is_the_eager_spans() -> None:
    provider, exporter = _sdk_provider()
    tracer = provider.get_tracer("t")
    calls: list[int] = []
    span = LazySpan(tracer, _builder(tracer, calls))
    span.set_attribute("early", "yes")
    assert calls == [] and not span.built
    sc = span.get_span_context()
    assert (sc.trace_id, sc.span_id) == (0xABC, 0xDEF) and calls == [1]
    assert span.get_span_context() == sc and calls == [1]  # made once
    span.set_attribute("late", 2)
    span.end(START + 5)
    (done,) = exporter.get_finished_spans()
    assert dict(done.attributes or {}) == {"a": "x", "n": 1, "early": "yes", "late": 2}
    assert (done.start_time, done.end_time, done.kind) == (START, START + 5, SpanKind.CONSUMER)


def test_with_an_sdk_processor_the_span_is_made_and_ended_at_end() -> None:
    provider, exporter = _sdk_provider()
    tracer = provider.get_tracer("t")
    calls: list[int] = []
    span = LazySpan(tracer, _builder(tracer, calls))
    span.set_attribute("result", "success")
    span.end(START + 9)
    (done,) = exporter.get_finished_spans()  # at once: nothing waits for a flush
    assert calls == [1] and done.attributes is not None and done.attributes["result"] == "success"
    assert done.end_time == START + 9


def test_with_pipetraces_processor_the_span_is_made_when_it_ends_on_the_ending_thread() -> None:
    """No background thread of its own: in a busy process one waited for the GIL through every task, and the
    wake-ups cost the task's thread more than the work it took off it (``celery_inprocess.py`` shows them)."""
    provider, processor, exporter = _pipeline_provider()
    tracer = provider.get_tracer("t")
    calls: list[int] = []
    span = LazySpan(tracer, _builder(tracer, calls))
    span.set_attribute("result", "success")
    threads = {t.name for t in threading.enumerate()}
    span.end(START + 7)
    assert calls == [1] and not span.is_recording()  # made and handed to the processor in the end call
    assert {t.name for t in threading.enumerate()} - threads <= {"pipetrace-export-store"}
    span.set_attribute("after end", True)  # ignored, as the SDK ignores it on an ended span
    assert processor.force_flush(5000)
    assert calls == [1]
    (done,) = exporter.spans
    assert dict(done.attributes or {}) == {"a": "x", "n": 1, "result": "success"}
    assert (done.context.span_id, done.end_time) == (0xDEF, START + 7)
    processor.shutdown()


def test_spans_ended_before_shutdown_are_exported_by_it() -> None:
    provider, processor, exporter = _pipeline_provider()
    tracer = provider.get_tracer("t")
    spans = [LazySpan(tracer, _builder(tracer, [], name=f"task {i}")) for i in range(5)]
    for span in spans:
        span.end()
    processor.shutdown()
    assert sorted(s.name for s in exporter.spans) == [f"task {i}" for i in range(5)]


def test_an_ended_span_is_exported_without_a_flush() -> None:
    provider, processor, exporter = _pipeline_provider()
    tracer = provider.get_tracer("t")
    span = LazySpan(tracer, _builder(tracer, []))
    span.end()
    for _ in range(500):
        if exporter.spans:
            break
        threading.Event().wait(0.01)
    assert [s.name for s in exporter.spans] == ["task t"]
    processor.shutdown()


def test_exceptions_events_and_status_make_the_span_at_once() -> None:
    provider, exporter = _sdk_provider()
    tracer = provider.get_tracer("t")
    calls: list[int] = []
    span = LazySpan(tracer, _builder(tracer, calls))
    span.record_exception(ValueError("boom"))
    assert calls == [1]
    span.add_event("celery.retry", {"celery.retry.reason": "again"})
    span.set_status(StatusCode.ERROR, "ValueError: boom")
    span.end()
    (done,) = exporter.get_finished_spans()
    assert [e.name for e in done.events] == ["exception", "celery.retry"]
    assert done.status.status_code is StatusCode.ERROR


def test_user_spans_under_a_lazy_span_are_its_children() -> None:
    provider, exporter = _sdk_provider()
    tracer = provider.get_tracer("t")
    span = LazySpan(tracer, _builder(tracer, []))
    with trace.use_span(span, end_on_exit=True):
        with tracer.start_as_current_span("user work"):
            pass
    user, task = exporter.get_finished_spans()
    assert user.parent is not None and user.parent.span_id == task.context.span_id == 0xDEF
    assert user.context.trace_id == 0xABC


def test_a_failing_build_is_logged_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    provider, processor, _exporter = _pipeline_provider()
    tracer = provider.get_tracer("t")

    def broken() -> Any:
        raise RuntimeError("bad request")

    span = LazySpan(tracer, broken)
    ratelimit.reset()
    with caplog.at_level(logging.WARNING, logger="pipetrace"):
        span.end()
    assert "bad request" in caplog.text
    processor.shutdown()


def test_a_failing_build_in_the_tasks_thread_gives_an_invalid_span_not_an_exception(
        caplog: pytest.LogCaptureFixture) -> None:
    provider, _exporter = _sdk_provider()

    def broken() -> Any:
        raise KeyError("no headers")

    span = LazySpan(provider.get_tracer("t"), broken)
    ratelimit.reset()  # (one warning a minute per kind)
    with caplog.at_level(logging.WARNING, logger="pipetrace"):
        assert not span.get_span_context().is_valid  # what user code asking for it gets
        span.set_attribute("a", 1)
        span.end()
    assert "no headers" in caplog.text


def test_asking_for_the_span_while_it_is_being_built_does_not_deadlock() -> None:
    """A log record made during the build reads the current span's ids (the logging instrumentation
    does): the inner ask gets an invalid context at once; the build itself is not disturbed."""
    provider, exporter = _sdk_provider()
    tracer = provider.get_tracer("t")
    inner: list[Any] = []
    holder: list[LazySpan] = []
    plain = _builder(tracer, [])

    def build() -> Any:
        inner.append(holder[0].get_span_context())
        return plain()

    span = LazySpan(tracer, build)
    holder.append(span)
    assert span.get_span_context().span_id == 0xDEF
    assert inner and not inner[0].is_valid
    span.end()
    assert [s.context.span_id for s in exporter.get_finished_spans()] == [0xDEF]


def test_an_attribute_set_while_another_thread_builds_is_kept() -> None:
    provider, exporter = _sdk_provider()
    tracer = provider.get_tracer("t")
    plain = _builder(tracer, [])
    started, go = threading.Event(), threading.Event()

    def slow_build() -> Any:
        started.set()
        go.wait(5)
        return plain()

    span = LazySpan(tracer, slow_build)
    builder = threading.Thread(target=span.real)
    builder.start()
    started.wait(5)
    span.set_attribute("during", "build")  # the build has not replayed yet: kept in the list
    go.set()
    builder.join(5)
    span.set_attribute("after", "build")
    span.end()
    (done,) = exporter.get_finished_spans()
    assert done.attributes is not None
    assert done.attributes["during"] == "build" and done.attributes["after"] == "build"


