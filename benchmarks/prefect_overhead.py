"""Prefect overhead: a flow of 50 task runs with and without pipetrace, side by side in one process.

Runs are interleaved (untraced, traced, untraced, ...) against one ephemeral Prefect server; the
untraced runs have pipetrace uninstrumented and Prefect's native run telemetry off (no tracing work at
all), the traced runs have pipetrace on, exporting to its store. Prints the median wall time of each,
the ratio (goal ≤ 1.05) and the added milliseconds per task run.

    .venvs/prefect/bin/python benchmarks/prefect_overhead.py [--rounds 5] [--tasks 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="pipetrace-bench-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

import pipetrace  # noqa: E402
from pipetrace.integrations.prefect import instrument, uninstrument  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.settings import PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY, temporary_settings  # noqa: E402


@task
def work(i: int) -> int:
    return sum(range(200)) + i


@task
def collect(values: list[int]) -> int:
    return len(values)


def make_flow(n: int):  # noqa: ANN201
    @flow(name="bench_prefect")
    def bench() -> int:
        half = n // 2
        mapped = work.map(range(half))                       # one batch
        submitted = [work.submit(i) for i in range(half, n - 1)]
        return collect(list(mapped) + submitted)  # type: ignore[arg-type]  # fan-in: a link per input

    return bench


def timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--exporters", default="store", help="pipetrace exporters for the traced runs")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="pipetrace-bench-home-")
    pipetrace.configure(home=home, exporters=args.exporters)
    bench = make_flow(args.tasks)
    with temporary_settings(updates={PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY: False}):
        bench()  # warm-up: starts the ephemeral server, imports, first-run caches
    instrument()
    bench()
    uninstrument()
    base: list[float] = []
    traced: list[float] = []
    for _ in range(args.rounds):
        with temporary_settings(updates={PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY: False}):
            base.append(timed(bench))
        instrument()
        traced.append(timed(bench))
        uninstrument()
    pipetrace.force_flush(30)
    b, t = statistics.median(base), statistics.median(traced)
    spans = pipetrace.store.SpanStore(pipetrace.settings().store_path).count()
    print(f"flow of {args.tasks} task runs, {args.rounds} rounds (medians), {spans} spans stored")
    print(f"  without pipetrace: {b * 1000:8.1f} ms")
    print(f"  with pipetrace:    {t * 1000:8.1f} ms")
    print(f"  ratio:             {t / b:8.3f}   (goal <= 1.05)")
    print(f"  added per task run:{(t - b) * 1000 / args.tasks:8.2f} ms")


if __name__ == "__main__":
    main()
