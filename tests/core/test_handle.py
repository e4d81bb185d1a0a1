"""The span handle's API (pipetrace.machinery), and what processing guarantees around it: every lost span
counted by cause in ``pipetrace.stats()["lost"]`` and shown by doctor, instrumentation suppressed while
exporting, unsampled (RECORD_ONLY) spans never exported."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind
from pipetrace.cli.doctor import lost_spans
from pipetrace.config import Settings
from pipetrace.machinery import DeferredSpan, SpanHandle, begin_span, start_span
from pipetrace.machinery.ids import DerivedIdGenerator
from pipetrace.processing.processors import ExportQueue, PipelineProcessor
from pipetrace.util import losses, ratelimit


class _Recorder(SpanExporter):
    def __init__(self, result: SpanExportResult = SpanExportResult.SUCCESS, block: threading.Event | None = None
                 ) -> None:
        self.names: list[str] = []
        self.suppressed: list[bool] = []
        self.result = result
        self.block = block

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.block is not None:
            self.block.wait(5)
        # what every instrumentation (requests, urllib3, grpc, …) asks before it makes a span
        self.suppressed.append(bool(context_api.get_value(context_api._SUPPRESS_INSTRUMENTATION_KEY)))  # noqa: SLF001
        self.names.extend(s.name for s in spans)
        return self.result

    def shutdown(self) -> None:
        return None


@pytest.fixture(autouse=True)
def _fresh() -> None:
    losses.reset()
    ratelimit.reset()


def _pipeline(exporter: SpanExporter, sampler: Sampler | None = None) -> tuple[TracerProvider, PipelineProcessor]:
    processor = PipelineProcessor([ExportQueue(exporter, name="t", interval_s=0.01)])
    provider = TracerProvider(sampler=sampler, id_generator=DerivedIdGenerator())
    provider.add_span_processor(processor)
    return provider, processor


def test_each_strategy_is_the_one_handle_api() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=DerivedIdGenerator())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    eager = start_span(tracer, "eager", context=Context(), trace_id=0xA1, span_id=0xB1)
    deferred = begin_span(tracer, "deferred", context=Context(), trace_id=0xA2, span_id=0xB2)
    assert isinstance(eager, ReadableSpan)  # eager: the SDK's own span
    assert isinstance(deferred, DeferredSpan) and isinstance(deferred, SpanHandle)
    for span in (eager, deferred):
        span.set_attribute("k", "v")
        span.end()
    got = {s.name: (s.context.trace_id, s.context.span_id, dict(s.attributes or {}))
           for s in exporter.get_finished_spans()}
    assert got == {"eager": (0xA1, 0xB1, {"k": "v"}), "deferred": (0xA2, 0xB2, {"k": "v"})}


def test_the_export_runs_with_instrumentation_suppressed() -> None:
    exporter = _Recorder()
    provider, processor = _pipeline(exporter)
    start_span(provider.get_tracer("t"), "task x").end()
    assert processor.force_flush(5000)
    assert exporter.names == ["task x"] and exporter.suppressed == [True]
    assert not context_api.get_value(context_api._SUPPRESS_INSTRUMENTATION_KEY)  # noqa: SLF001 - the task's own


class _RecordOnly(Sampler):
    def should_sample(self, parent_context: Any, trace_id: int, name: str, kind: Any = None, attributes: Any = None,
                      links: Any = None, trace_state: Any = None) -> SamplingResult:
        return SamplingResult(Decision.RECORD_AND_SAMPLE if name.startswith("keep") else Decision.RECORD_ONLY,
                              attributes)

    def get_description(self) -> str:
        return "record-only unless keep*"


@pytest.mark.parametrize("make", ["eager", "deferred"])
def test_unsampled_record_only_spans_are_never_exported(make: str) -> None:
    exporter = _Recorder()
    provider, processor = _pipeline(exporter, _RecordOnly())
    tracer = provider.get_tracer("t")
    begin = start_span if make == "eager" else begin_span
    for name in ("keep a", "drop b", "keep c"):
        span = begin(tracer, name, context=Context(), kind=SpanKind.INTERNAL)
        assert span.is_recording()  # RECORD_ONLY spans record (processors may read them) …
        span.end()
    assert processor.force_flush(5000)
    assert exporter.names == ["keep a", "keep c"]  # … and are not exported, as in the SDK's BatchSpanProcessor


def test_a_full_queue_a_failing_exporter_and_shutdown_are_counted_by_cause() -> None:
    gate = threading.Event()
    full = ExportQueue(_Recorder(block=gate), name="slow", max_queue_size=2, max_batch_size=1, interval_s=0.01)
    failing = ExportQueue(_Recorder(SpanExportResult.FAILURE), name="broken", interval_s=0.01)
    for i in range(6):
        full.offer(ReadableSpan(name=f"s{i}"))
        failing.offer(ReadableSpan(name=f"s{i}"))
    assert failing.flush(5)
    lost = losses.snapshot()
    assert lost["exporter_error.broken"] == 6
    assert lost["queue_full.slow"] >= 3  # one in the running export, two queued, the rest dropped
    full.shutdown(0.05)  # the export is still blocked: what waits behind it is lost at shutdown
    assert losses.snapshot()["shutdown.slow"] >= 2
    gate.set()  # the blocked export finishes after all: its span is taken back from the shutdown count
    thread = full._thread  # noqa: SLF001
    assert thread is not None
    thread.join(5)
    lost = losses.snapshot()
    delivered = len(full.exporter.names)  # type: ignore[attr-defined]
    assert delivered == 1 and lost["shutdown.slow"] >= 1
    assert lost["queue_full.slow"] + lost["shutdown.slow"] + delivered == 6  # every span accounted for once


def test_handle_losses_are_counted_and_stats_and_doctor_show_them(tmp_path: Path) -> None:
    from pipetrace.spans import start_task_span

    span = start_task_span("celery", "p", "r", "t", start_time="not a time")  # bad input from an adapter
    assert not span.get_span_context().is_valid  # the body runs under an invalid span, never an error
    span.end()

    def boom(_: ReadableSpan) -> ReadableSpan:
        raise ValueError("redaction bug")

    processor = PipelineProcessor([ExportQueue(_Recorder(), name="t", interval_s=0.01)], [boom])
    processor.on_end(ReadableSpan(name="x", context=trace.SpanContext(1, 2, False, trace.TraceFlags(1))))
    assert processor.force_flush(5000)
    assert losses.snapshot() == {"span_start": 1, "transform_error": 1}

    import pipetrace

    assert pipetrace.stats()["lost"] == {"span_start": 1, "transform_error": 1}
    lines = [f.line() for f in lost_spans(Settings(home=tmp_path))]
    assert any(ln.startswith("✗ lost spans: 1 span_start in this process: a span helper could not start or record "
                             "a span") for ln in lines)
    assert len(lines) == 2
    losses.reset()
    none = [f.line() for f in lost_spans(Settings(home=tmp_path))]
    assert none[0].startswith("· lost spans: none in the last 7 days")


LOSING_PROGRAM = """
import pipetrace
from pipetrace.spans import start_task_span

pipetrace.configure()
for _ in range(3):  # lost on purpose: a start time that is not one
    start_task_span("celery", "p", "r", "t", start_time="not a time").end()
assert pipetrace.stats()["lost"] == {"span_start": 3}, pipetrace.stats()
"""


def test_doctor_in_its_own_process_shows_what_other_traced_processes_lost(tmp_path: Path) -> None:
    """``pipetrace doctor`` is a process of its own: it reads the loss journal every traced process of the
    home writes, so spans another process lost are shown, summed over processes, with their cause."""
    env = {**os.environ, "PIPETRACE_HOME": str(tmp_path), "PIPETRACE_EXPORTERS": "store"}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    for _ in range(2):  # two processes, each losing 3 (the journal is written at exit at the latest)
        subprocess.run([sys.executable, "-c", LOSING_PROGRAM], env=env, check=True, timeout=60)
    assert len(list((tmp_path / "losses").glob("*.json"))) == 2
    doctor = subprocess.run([str(Path(sys.executable).with_name("pipetrace")), "doctor"], env=env, capture_output=True,
                            text=True, timeout=120)
    line = next(ln for ln in doctor.stdout.splitlines() if "lost spans" in ln)
    assert line.startswith("✗ lost spans: 6 span_start in 2 traced process(es) of"), doctor.stdout
    assert "a span helper could not start or record a span" in line
    assert doctor.returncode == 1  # a ✗ makes doctor exit 1


def test_the_loss_journal_is_written_soon_after_a_loss_not_only_at_exit(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(losses, "JOURNAL_DELAY_S", 0.05)
    losses.reset()
    losses.journal_to(tmp_path)
    try:
        losses.count("queue_full", 4, exporter="otlp")
        deadline = time.monotonic() + 5
        while not losses.recorded(tmp_path).lost and time.monotonic() < deadline:
            time.sleep(0.02)
        got = losses.recorded(tmp_path)
        assert got.lost == {"queue_full.otlp": 4} and got.processes == 1
        (tmp_path / "losses" / "garbage.json").write_text("{not json")  # a broken file is skipped
        assert losses.recorded(tmp_path).lost == {"queue_full.otlp": 4}
        assert losses.recorded(tmp_path, since_ns=time.time_ns() + 10**9).lost == {}
    finally:
        losses.journal_to(None)
        losses.reset()


def test_the_span_context_decided_at_the_start_is_the_apis_own() -> None:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
    from opentelemetry.trace import SpanContext
    from pipetrace.machinery import record

    class ZeroSpanIds(RandomIdGenerator):
        def generate_span_id(self) -> int:
            return 0  # an invalid id: the API's own rules must decide what the context is

    for generator, span_id in ((RandomIdGenerator(), 0x1234), (RandomIdGenerator(), None), (ZeroSpanIds(), None)):
        tracer = TracerProvider(id_generator=generator).get_tracer("t")
        decided = record.decide(tracer, "n", Context(), SpanKind.INTERNAL, {"k": 1}, (), None, span_id)
        assert isinstance(decided, record.Decision)
        sc = decided.context
        api = SpanContext(sc.trace_id, sc.span_id, is_remote=False, trace_flags=sc.trace_flags)
        assert type(sc) is SpanContext and tuple(sc) == tuple(api) and sc.trace_state is api.trace_state
        assert sc.is_valid is (span_id is not None or type(generator) is RandomIdGenerator)
