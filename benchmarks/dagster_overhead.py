"""Overhead of the Dagster adapter: a 30-op job run in process with and without pipetrace, side by
side in one process, in paired rounds (order alternating each round, ``_harness.paired_rounds``).

pipetrace runs as deployed: redaction on, exporting (``--exporters``, default ``store,otlp``: the
embedded store plus OTLP/HTTP to a local receiver that counts the spans it got). A traced run's CPU
(every thread of this process) is read after ``force_flush``, so its export work is counted.

    .venvs/dagster/bin/python benchmarks/dagster_overhead.py [--rounds 15] [--exporters store,otlp] [--markdown]

Prints wall and CPU as median (min, max), the paired per-round ratios (goal ≤ 1.05 for both) and the
milliseconds pipetrace adds per step.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import SpanCounter, paired_rounds, report_on_off  # noqa: E402

BEFORE = "1.049 wall (median of unpaired medians; store only, flushed once at the end)"

OPS = 30
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}  # console logging would dominate


def build_job():  # type: ignore[no-untyped-def]
    from dagster import In, job, op

    @op
    def source() -> int:
        return 1

    def stage(i: int):  # type: ignore[no-untyped-def]
        @op(name=f"stage_{i:02d}", ins={"value": In(int)})
        def _stage(value: int) -> int:
            return sum(range(2000)) * 0 + value + i

        return _stage

    stages = [stage(i) for i in range(1, OPS - 1)]

    @op
    def sink(a: int, b: int) -> int:
        return a + b

    @job
    def bench_30_ops() -> None:
        # two chains of 14 stages fanning into one sink: 1 + 28 + 1 = 30 steps
        first = source()
        left, right = first, first
        for s in stages[: len(stages) // 2]:
            left = s(left)
        for s in stages[len(stages) // 2:]:
            right = s(right)
        sink(left, right)

    return bench_30_ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--exporters", default="store,otlp", help="PIPETRACE_EXPORTERS for the traced runs")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    import pipetrace
    from pipetrace.integrations.dagster import instrument, uninstrument

    with SpanCounter() as receiver:
        pipetrace.configure(home=tempfile.mkdtemp(prefix="pipetrace-bench-"), exporters=args.exporters,
                            otlp_endpoint=receiver.endpoint)
        job_def = build_job()
        assert len(job_def.nodes) == OPS
        spans: list[int] = []

        def once(mode: str, _round: int) -> tuple[float, float]:
            (instrument if mode == "on" else uninstrument)()
            before = receiver.spans
            t0, c0 = time.perf_counter(), time.process_time()
            result = job_def.execute_in_process(run_config=QUIET)
            elapsed = time.perf_counter() - t0
            pipetrace.force_flush(30)  # the traced run's export work belongs to it
            cpu = time.process_time() - c0
            assert result.success
            if mode == "on":
                spans.append(receiver.spans - before)
            return elapsed, cpu

        once("off", 0)
        once("on", 0)  # warm-up: imports, first configuration
        runs, loads = paired_rounds(("off", "on"), args.rounds, once)
        uninstrument()
    report_on_off(runs, loads, spans, args, title=f"dagster {OPS}-op job, in process, {args.rounds} paired rounds",
                  name="Dagster 30-op job", script="dagster_overhead.py", per=OPS, unit="step", goal=1.05,
                  before=(BEFORE, "not measured"))


if __name__ == "__main__":
    main()
