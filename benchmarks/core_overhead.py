"""Core overhead, measured side by side in one run.

1. ``task_span`` enter+exit (derived ids, attributes, store exporter on its background queue) vs a bare
   OTel SDK span carrying the same attributes, with a no-op exporter behind the SDK's BatchSpanProcessor.
2. Carrier inject+extract per message vs a bare ``dict`` copy of the headers.

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


def best_of(fn: Callable[[int], None], n: int, rounds: int = 7) -> float:
    """Median seconds per call over ``rounds`` runs of ``n`` calls (after a warm-up)."""
    fn(min(n, 1000))
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn(n)
        samples.append((time.perf_counter() - start) / n)
    return statistics.median(samples)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    home = tempfile.mkdtemp(prefix="pipetrace-bench-")
    pipetrace.configure(home=home, exporters="store", max_queue_size=10 * n)

    bare_provider = TracerProvider()
    bare_provider.add_span_processor(BatchSpanProcessor(NoOpExporter(), max_queue_size=10 * n))
    bare = bare_provider.get_tracer("bench")
    attrs = {"pipetrace.system": "python", "cicd.pipeline.name": "bench", "cicd.pipeline.run.id": "r",
             "cicd.pipeline.task.name": "t", "pipetrace.task.try_number": 1, "cicd.pipeline.task.run.id": "r/t#1"}
    counter = [0]

    def ours(k: int) -> None:
        base = counter[0]
        counter[0] += k
        for i in range(base, base + k):
            with pipetrace.task_span("python", "bench", "run", f"task-{i}"):
                pass

    def sdk(k: int) -> None:
        for _ in range(k):
            with bare.start_as_current_span("task t", attributes=attrs) as span:
                span.set_attribute("cicd.pipeline.task.run.result", "success")

    t_ours = best_of(ours, n)
    t_sdk = best_of(sdk, n)

    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
               "tracestate": "vendor=1", "content-type": "application/json", "id": "42"}

    def carriers(k: int) -> None:
        with pipetrace.get_tracer().start_as_current_span("producer"):
            for _ in range(k):
                msg = pipetrace.inject(dict(headers))
                pipetrace.extract(msg)

    def copies(k: int) -> None:
        for _ in range(k):
            dict(headers)

    t_carrier = best_of(carriers, n)
    t_copy = best_of(copies, n)
    pipetrace.force_flush(30)
    stats = pipetrace.stats()["store"]
    pipetrace.shutdown(10)
    bare_provider.shutdown()

    print(f"task_span enter+exit (store exporter): {t_ours * 1e6:8.2f} µs")
    print(f"bare OTel SDK span (no-op exporter):   {t_sdk * 1e6:8.2f} µs")
    print(f"ratio ours / bare SDK:                 {t_ours / t_sdk:8.2f}x   (goal ≤ 1.5x)")
    print(f"carrier inject+extract per message:    {t_carrier * 1e6:8.2f} µs")
    print(f"bare dict copy per message:            {t_copy * 1e6:8.2f} µs")
    added = (t_carrier - t_copy) * 1e6
    print(f"ratio carrier / dict copy:             {t_carrier / t_copy:8.1f}x   (added {added:.2f} µs)")
    print(f"store: exported={stats['exported']} dropped={stats['dropped']} failed={stats['failed']}")


if __name__ == "__main__":
    main()
