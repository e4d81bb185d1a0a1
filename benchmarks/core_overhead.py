"""Core overhead, measured side by side in one run.

1. ``task_span`` enter+exit (derived ids, attributes; default processing: redaction on, then export)
   vs a bare OTel SDK span carrying the same attributes, set up as OTel's docs show (plain
   ``TracerProvider`` + ``BatchSpanProcessor`` + OTLP/HTTP exporter). Both export OTLP/HTTP to the same
   local receiver (in this process, so its decoding weighs on both alike), which counts what it got;
   pipetrace's ``--exporters`` default ``store,otlp`` (the embedded store too, as deployed with an
   endpoint).
2. Carrier inject+extract per message vs a bare ``dict`` copy of the headers.

Rounds are paired: each round runs N calls of each side, the order alternating per round, and drains
both sides' background work (flush) inside the round. Per side and round: the **median** call (what a
task pays on its own thread) and the **CPU per span** of every thread, flush included (the background
redaction, encoding and export). Each is printed as median (min, max) over the rounds, with the paired
per-round ratios.

Run: ``.venvs/core/bin/python benchmarks/core_overhead.py [N] [--rounds 5] [--markdown]``.
Goal: our span ≤ 1.5× the bare SDK span.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pipetrace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.util.types import AttributeValue

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import TABLE_HEADER, SpanCounter, fmt_spread, paired_ratios, paired_rounds, summary_row  # noqa: E402

BEFORE = "1.09× (median call; reference: bare SDK span with a no-op exporter)"


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


def timed_calls(fn: Callable[[int], None], n: int, offset: int, flush: Callable[[], object]) -> tuple[float, float]:
    """(median seconds per call, CPU seconds per call of every thread with the flush) over n calls."""
    samples: list[float] = []
    cpu = time.process_time()
    for i in range(n):
        start = time.perf_counter()
        fn(offset + i)
        samples.append(time.perf_counter() - start)
    flush()
    return statistics.median(samples), (time.process_time() - cpu) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--exporters", default="store,otlp")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    n = args.n
    home = tempfile.mkdtemp(prefix="pipetrace-bench-")
    with SpanCounter() as receiver:
        pipetrace.configure(home=home, exporters=args.exporters, otlp_endpoint=receiver.endpoint,
                            max_queue_size=10 * n)
        bare_provider = TracerProvider()
        bare_provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces"), max_queue_size=10 * n))
        bare = bare_provider.get_tracer("bench")
        attrs: dict[str, AttributeValue] = {
            "pipetrace.system": "python", "cicd.pipeline.name": "bench", "cicd.pipeline.run.id": "r",
            "cicd.pipeline.task.name": "t", "pipetrace.task.try_number": 1, "cicd.pipeline.task.run.id": "r/t#1"}

        def ours(i: int) -> None:
            with pipetrace.task_span("python", "bench", "run", f"task-{i}"):
                pass

        def sdk(i: int) -> None:
            with bare.start_as_current_span("task t", attributes=attrs) as span:
                span.set_attribute("cicd.pipeline.task.run.result", "success")

        sides = {"pipetrace": (ours, lambda: pipetrace.force_flush(60)),
                 "sdk": (sdk, lambda: bare_provider.force_flush(60_000))}
        for fn, flush in sides.values():  # warm-up
            timed_calls(fn, min(n, 1000), -10_000_000, flush)
        receiver.reset()
        runs, loads = paired_rounds(tuple(sides), args.rounds,
                                    lambda mode, r: timed_calls(sides[mode][0], n, r * n, sides[mode][1]))
        receiver.wait_for(2 * n * args.rounds, 30)
        got = receiver.spans

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
        pipetrace.shutdown(10)
        bare_provider.shutdown()

    print(f"{n} spans a side per round, {args.rounds} paired rounds (alternating order), pipetrace exporters "
          f"{args.exporters}; spans received {got}/{2 * n * args.rounds}")
    rows = []
    for k, label in ((0, "median call"), (1, "CPU per span, flush included")):
        o, s_ = [r[k] * 1e6 for r in runs["pipetrace"]], [r[k] * 1e6 for r in runs["sdk"]]
        ratios = paired_ratios(o, s_)
        print(f"  {label:30s} task_span {fmt_spread(o)} µs   bare SDK + BSP + OTLP {fmt_spread(s_)} µs   "
              f"ratio per round {fmt_spread(ratios)}")
        rows.append(summary_row(f"core `task_span` {label} / bare SDK span (`core_overhead.py --rounds {args.rounds}"
                                f" --exporters {args.exporters}`)",
                                BEFORE if k == 0 else "not measured", f"**{statistics.median(ratios):.2f}×**",
                                f"SDK span + BSP + OTLP/HTTP: {statistics.median(s_):.1f} µs",
                                f"{min(ratios):.2f}–{max(ratios):.2f}", loads))
    print("  (goal ≤ 1.5× on the task's path = median call)")
    print(f"{'carrier inject+extract per message':40} {c_med * 1e6:8.2f}µs")
    print(f"{'bare dict copy per message':40} {d_med * 1e6:8.2f}µs   (added {(c_med - d_med) * 1e6:.2f}µs "
          "per message)")
    if args.markdown:
        print(TABLE_HEADER)
        print("\n".join(rows))


if __name__ == "__main__":
    main()
