"""Overhead of the Dagster adapter: a 30-op job run in process with and without pipetrace, side by
side in one process (runs interleaved so machine noise hits both alike).

    python benchmarks/dagster_overhead.py [--rounds 15]

Prints median wall times, their ratio (goal ≤ 1.05) and the milliseconds pipetrace adds per step.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

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
    parser.add_argument("--exporters", default="store", help="PIPETRACE_EXPORTERS for the traced runs")
    args = parser.parse_args()

    import pipetrace
    from pipetrace.integrations.dagster import instrument, uninstrument

    pipetrace.configure(home=tempfile.mkdtemp(prefix="pipetrace-bench-"), exporters=args.exporters)
    job_def = build_job()
    assert len(job_def.nodes) == OPS

    cpu: dict[bool, list[float]] = {False: [], True: []}

    def once(traced: bool) -> float:
        (instrument if traced else uninstrument)()
        t0, c0 = time.perf_counter(), time.process_time()
        result = job_def.execute_in_process(run_config=QUIET)
        elapsed = time.perf_counter() - t0
        cpu[traced].append(time.process_time() - c0)
        assert result.success
        return elapsed

    once(False)
    once(True)  # warm-up: imports, first configuration
    plain: list[float] = []
    traced: list[float] = []
    for i in range(args.rounds):
        order = (False, True) if i % 2 == 0 else (True, False)
        for flag in order:
            (traced if flag else plain).append(once(flag))
    uninstrument()
    pipetrace.force_flush(10)
    p, t = statistics.median(plain), statistics.median(traced)
    print(f"dagster {OPS}-op job, in process, {args.rounds} rounds each (median)")
    print(f"  without pipetrace: {p * 1000:8.1f} ms")
    print(f"  with pipetrace:    {t * 1000:8.1f} ms")
    print(f"  ratio:             {t / p:8.3f}  (goal <= 1.05)")
    print(f"  added per step:    {(t - p) * 1000 / OPS:8.3f} ms")
    cp, ct = statistics.median(cpu[False][1:]), statistics.median(cpu[True][1:])
    print(f"  CPU time ratio:    {ct / cp:8.3f}  (process CPU; robust on a busy machine)")
    print(f"  CPU added / step:  {(ct - cp) * 1000 / OPS:8.3f} ms")


if __name__ == "__main__":
    main()
