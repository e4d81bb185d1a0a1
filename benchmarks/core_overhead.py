"""Core overhead, measured side by side in one run.

1. ``task_span`` enter+exit (derived ids, attributes; default processing chain: redaction on its
   background stage, then the embedded store) vs a bare OTel SDK span carrying the same attributes, with
   a no-op exporter behind the SDK's BatchSpanProcessor.
2. Carrier inject+extract per message vs a bare ``dict`` copy of the headers.

Each call is timed on its own. The **median** is what a task pays on its own thread; the **mean** also
carries the background work (redaction, SQLite writes) that competes for the GIL in a tight loop.

Run: ``.venvs/core/bin/python benchmarks/core_overhead.py [N]``. Goal: our span ≤ 1.5× the bare SDK span.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

import pipetrace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class NoOpExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def per_call(fn: Callable[[int], None], n: int, rounds: int = 5) -> tuple[float, float]:
    """(median, mean) seconds per call over ``rounds`` × ``n`` calls, after a warm-up."""
    for i in range(min(n, 1000)):
        fn(-i - 1)
    samples: list[float] = []
    for r in range(rounds):
        for i in range(n):
            start = time.perf_counter()
            fn(r * n + i)
            samples.append(time.perf_counter() - start)
    return statistics.median(samples), statistics.fmean(samples)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    home = tempfile.mkdtemp(prefix="pipetrace-bench-")
    pipetrace.configure(home=home, exporters="store", max_queue_size=10 * n)

    bare_provider = TracerProvider()
    bare_provider.add_span_processor(BatchSpanProcessor(NoOpExporter(), max_queue_size=10 * n))
    bare = bare_provider.get_tracer("bench")
    attrs = {"pipetrace.system": "python", "cicd.pipeline.name": "bench", "cicd.pipeline.run.id": "r",
             "cicd.pipeline.task.name": "t", "pipetrace.task.try_number": 1, "cicd.pipeline.task.run.id": "r/t#1"}

    def ours(i: int) -> None:
        with pipetrace.task_span("python", "bench", "run", f"task-{i}"):
            pass

    def sdk(i: int) -> None:
        with bare.start_as_current_span("task t", attributes=attrs) as span:
            span.set_attribute("cicd.pipeline.task.run.result", "success")

    o_med, o_mean = per_call(ours, n)
    pipetrace.force_flush(60)
    s_med, s_mean = per_call(sdk, n)

    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
               "tracestate": "vendor=1", "content-type": "application/json", "id": "42"}
    producer = pipetrace.get_tracer().start_span("producer")
    from opentelemetry import trace

    ctx = trace.set_span_in_context(producer)

    def carriers(i: int) -> None:
        pipetrace.extract(pipetrace.inject(dict(headers), context=ctx))

    def copies(i: int) -> None:
        dict(headers)

    c_med, _ = per_call(carriers, n, 3)
    d_med, _ = per_call(copies, n, 3)
    producer.end()
    pipetrace.force_flush(60)
    stats = pipetrace.stats()["store"]
    pipetrace.shutdown(10)
    bare_provider.shutdown()

    print(f"{'':40} {'median':>10} {'mean':>10}")
    print(f"{'task_span enter+exit (store exporter)':40} {o_med * 1e6:8.2f}µs {o_mean * 1e6:8.2f}µs")
    print(f"{'bare OTel SDK span (no-op exporter)':40} {s_med * 1e6:8.2f}µs {s_mean * 1e6:8.2f}µs")
    print(f"{'ratio ours / bare SDK':40} {o_med / s_med:9.2f}x {o_mean / s_mean:9.2f}x   "
          "(goal ≤ 1.5x on the task's path = median; the mean adds background redaction + SQLite work)")
    print(f"{'carrier inject+extract per message':40} {c_med * 1e6:8.2f}µs")
    print(f"{'bare dict copy per message':40} {d_med * 1e6:8.2f}µs   (added {(c_med - d_med) * 1e6:.2f}µs "
          "per message)")
    print(f"store: exported={stats['exported']} dropped={stats['dropped']} failed={stats['failed']}")


if __name__ == "__main__":
    main()
