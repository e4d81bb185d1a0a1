"""The export queues: no thread until the first span, no wake-ups while idle, transforms once per span
on the single exporter's own thread, a retried batch never transformed twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from pipetrace.processing.processors import ExportQueue, PipelineProcessor


class _Recorder(SpanExporter):
    def __init__(self, fail_first: int = 0) -> None:
        self.batches: list[list[str]] = []
        self.times: list[float] = []  # monotonic time of each export
        self.threads: set[str] = set()
        self.fail_first = fail_first

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.threads.add(threading.current_thread().name)
        if self.fail_first > 0:
            self.fail_first -= 1
            return SpanExportResult.FAILURE
        self.batches.append([s.name for s in spans])
        self.times.append(time.monotonic())
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


class _CountingCondition(threading.Condition):
    def __init__(self, lock: Any) -> None:
        super().__init__(lock)
        self.waits = 0
        self.wakes = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        return super().wait(timeout)

    def notify(self, n: int = 1) -> None:
        if self._waiters:  # type: ignore[attr-defined]  # (someone is woken: the export thread)
            self.wakes += 1
        super().notify(n)


def _span(name: str) -> ReadableSpan:
    return ReadableSpan(name=name)


def test_no_thread_until_the_first_span_and_no_wake_ups_while_idle() -> None:
    exporter = _Recorder()
    queue = ExportQueue(exporter, name="t", interval_s=0.02)
    assert queue._thread is None  # noqa: SLF001 - a process that ends no span has no export thread
    cond = _CountingCondition(queue._mutex)  # noqa: SLF001 - the queue's lock: offer takes it directly
    queue._cond = cond  # noqa: SLF001
    queue.offer(_span("a"))
    assert queue.flush(5)
    assert exporter.batches == [["a"]]
    time.sleep(0.1)
    before = cond.waits
    time.sleep(0.5)  # 25 export intervals
    assert cond.waits - before <= 1, "an idle export thread woke up"
    queue.offer(_span("b"))  # and it still wakes for the next span, within the interval
    deadline = time.monotonic() + 2
    while exporter.batches != [["a"], ["b"]] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert exporter.batches == [["a"], ["b"]]
    queue.shutdown(5)


def test_a_busy_queue_is_not_woken_for_each_batchs_first_span() -> None:
    """Spans that keep coming are taken when the thread's interval is up: no wake-up for the first span of
    each batch (in a busy process a woken thread waits for the GIL, and is woken for nothing meanwhile)."""
    exporter = _Recorder()
    queue = ExportQueue(exporter, name="t", interval_s=0.2)
    cond = _CountingCondition(queue._mutex)  # noqa: SLF001 - the queue's lock: offer takes it directly
    queue._cond = cond  # noqa: SLF001
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < 2.0:  # ~10 intervals of spans, one every 10 ms
        queue.offer(_span(f"s{n}"))
        n += 1
        time.sleep(0.01)
    assert queue.flush(5)
    assert sum(len(b) for b in exporter.batches) == n and len(exporter.batches) >= 4  # taken as they came
    assert cond.wakes <= 2, f"woken {cond.wakes} times for {len(exporter.batches)} batches"
    queue.shutdown(5)


def test_a_full_batch_goes_at_once_and_a_lone_span_waits_for_the_interval() -> None:
    exporter = _Recorder()
    queue = ExportQueue(exporter, name="t", interval_s=1.0, max_batch_size=5)
    started = time.monotonic()
    for i in range(12):
        queue.offer(_span(f"s{i}"))
    deadline = time.monotonic() + 2
    while sum(len(b) for b in exporter.batches) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert time.monotonic() - started < 0.8  # a full batch does not wait for the interval
    assert queue.flush(5)
    assert sum(len(b) for b in exporter.batches) == 12 and max(len(b) for b in exporter.batches) <= 5
    exporter.batches.clear()
    lone = time.monotonic()
    queue.offer(_span("lone"))
    while not exporter.batches and time.monotonic() < lone + 4:
        time.sleep(0.005)
    waited = time.monotonic() - lone
    assert exporter.batches == [["lone"]] and 0.9 <= waited < 3.5  # exported once its interval is up
    queue.shutdown(5)


def test_single_exporter_transforms_on_its_own_thread_and_a_retry_is_not_transformed_again() -> None:
    calls: list[str] = []

    def rename(span: ReadableSpan) -> ReadableSpan:
        calls.append(span.name)
        return ReadableSpan(name=span.name.upper())

    exporter = _Recorder(fail_first=1)
    queue = ExportQueue(exporter, name="store", interval_s=0.01, retry_failures=True)
    processor = PipelineProcessor([queue], [rename])
    assert processor.stage is None  # one exporter: no extra thread, no extra hop
    processor.on_end(_span("a"))
    processor.on_end(_span("b"))
    assert processor.force_flush(5000)
    assert exporter.batches == [["A", "B"]]
    assert calls == ["a", "b"]  # the failed batch was kept transformed
    assert exporter.threads == {"pipetrace-export-store"}
    processor.shutdown()


def test_several_exporters_share_one_transform_stage() -> None:
    calls: list[str] = []

    def mark(span: ReadableSpan) -> ReadableSpan:
        calls.append(span.name)
        return span

    first, second = _Recorder(), _Recorder()
    processor = PipelineProcessor([ExportQueue(first, name="store", interval_s=0.01),
                                   ExportQueue(second, name="otlp", interval_s=0.01)], [mark])
    assert processor.stage is not None
    for name in ("a", "b", "c"):
        processor.on_end(_span(name))
    assert processor.force_flush(5000)
    assert [n for b in first.batches for n in b] == [n for b in second.batches for n in b] == ["a", "b", "c"]
    assert calls == ["a", "b", "c"]
    stats: dict[str, Any] = processor.stats()
    assert set(stats) == {"transform", "store", "otlp"} and stats["store"]["exported"] == 3
    processor.shutdown()


def test_a_transform_added_later_reaches_the_single_exporter() -> None:
    exporter = _Recorder()
    processor = PipelineProcessor([ExportQueue(exporter, name="store", interval_s=0.01)], [])
    processor.transforms.append(lambda span: None)  # what pipetrace.add_transform does: drop everything
    processor.on_end(_span("secret"))
    assert processor.force_flush(5000)
    assert exporter.batches == []
    processor.shutdown()


class _Blocking(_Recorder):
    """An exporter that hangs until released (a collector that stopped answering)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(10)
        return super().export(spans)


def test_several_exporters_transform_each_span_once_with_no_thread_of_their_own() -> None:
    calls: list[str] = []
    lock = threading.Lock()

    def rename(span: ReadableSpan) -> ReadableSpan | None:
        with lock:
            calls.append(span.name)
        return None if span.name == "drop" else ReadableSpan(name=span.name.upper())

    first, second = _Recorder(), _Recorder()
    processor = PipelineProcessor([ExportQueue(first, name="store", interval_s=0.01),
                                   ExportQueue(second, name="otlp", interval_s=0.01)], [rename])
    names = [f"s{i}" for i in range(200)] + ["drop"]
    for name in names:
        processor.on_end(_span(name))
    assert processor.force_flush(5000)
    expected = [n.upper() for n in names if n != "drop"]
    assert [n for b in first.batches for n in b] == [n for b in second.batches for n in b] == expected
    assert sorted(calls) == sorted(names)  # once per span, whichever export thread took it first
    assert first.threads == {"pipetrace-export-store"} and second.threads == {"pipetrace-export-otlp"}
    assert not any(t.name == "pipetrace-export-transform" for t in threading.enumerate())
    assert processor.stats()["transform"]["exported"] == 200
    processor.shutdown()


def test_a_hung_exporter_does_not_hold_the_others_transformed_spans() -> None:
    hung, store = _Blocking(), _Recorder()
    processor = PipelineProcessor([ExportQueue(hung, name="otlp", interval_s=0.01),
                                   ExportQueue(store, name="store", interval_s=0.01)],
                                  [lambda span: ReadableSpan(name=span.name.upper())])
    processor.on_end(_span("a"))
    time.sleep(0.1)  # the OTLP thread took "a" and hangs in its export
    processor.on_end(_span("b"))
    assert processor.flush_only(["store"], 5)
    assert [n for b in store.batches for n in b] == ["A", "B"]
    hung.release.set()
    assert processor.force_flush(5000)
    assert [n for b in hung.batches for n in b] == ["A", "B"]
    processor.shutdown()


def test_a_forked_child_gets_a_fresh_transform_stage_lock() -> None:
    import os

    processor = PipelineProcessor([ExportQueue(_Recorder(), name="store"), ExportQueue(_Recorder(), name="otlp")],
                                  [lambda span: span])
    stage = processor.stage
    assert stage is not None
    with stage._lock:  # noqa: SLF001 - held by this process's export thread at the moment of the fork
        pid = os.fork()
        if pid == 0:  # the child: the stage must not stay locked for ever
            os._exit(0 if stage._lock.acquire(timeout=2) else 1)  # noqa: SLF001
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    processor.shutdown()


def _run_span(name: str = "run etl", run_id: str | None = "r1") -> ReadableSpan:
    from opentelemetry.trace import SpanKind

    return ReadableSpan(name=name, kind=SpanKind.SERVER,
                        attributes={} if run_id is None else {"cicd.pipeline.run.id": run_id})


def test_a_run_spans_end_writes_the_queue_at_once_at_most_once_per_gap() -> None:
    """A queue with ``run_end_gap_s`` (the store's) writes when a run span ends instead of waiting out its
    interval, but not sooner than the gap after its last write; a queue without it (OTLP) just waits."""
    store, otlp = _Recorder(), _Recorder()
    quick = ExportQueue(store, name="store", interval_s=30, run_end_gap_s=0.4)
    slow = ExportQueue(otlp, name="otlp", interval_s=30)
    processor = PipelineProcessor([quick, slow])
    for name in ("task a", "task b"):
        processor.on_end(_span(name))
    processor.on_end(_run_span("run etl-first"))
    time.sleep(0.05)
    processor.on_end(ReadableSpan(name="run client"))  # INTERNAL: not a run span
    processor.on_end(_run_span("run user", run_id=None))  # SERVER but no run id: a user's span, not a run span
    deadline = time.monotonic() + 5
    while not store.batches and time.monotonic() < deadline:
        time.sleep(0.005)
    assert store.batches == [["task a", "task b", "run etl-first"]]
    assert otlp.batches == []  # the OTLP queue keeps its own wait
    processor.on_end(_span("task c"))
    processor.on_end(_run_span())  # a second run right after: written one gap after the first write
    while len(store.batches) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert store.batches[1:] == [["run client", "run user", "task c", "run etl"]]
    assert store.times[1] - store.times[0] >= 0.35
    processor.on_end(_span("task d"))  # no run end: waits for the interval
    time.sleep(0.6)
    assert len(store.batches) == 2
    assert processor.force_flush(5_000) and store.batches[2:] == [["task d"]]
    assert [n for b in otlp.batches for n in b] == ["task a", "task b", "run etl-first", "run client", "run user",
                                                    "task c", "run etl", "task d"]
    processor.shutdown()
