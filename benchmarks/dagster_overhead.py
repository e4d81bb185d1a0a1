"""Overhead of the Dagster adapter: a 30-op job run in process with and without pipetrace, side by
side in one process, in paired rounds (order alternating each round, ``_harness.paired_rounds``).

pipetrace runs as deployed: redaction on, exporting (``--exporters``, default ``store,otlp``: the
embedded store plus OTLP/HTTP to a local receiver that counts the spans it got). A traced run's CPU
(every thread of this process) is read after ``force_flush``, so its export work is counted; the local
receiver's handler CPU (``SpanCounter.cpu_s``: the collector's side, another process in a deployment) is
taken out.

    .venvs/dagster/bin/python benchmarks/dagster_overhead.py [--rounds 15] [--exporters store,otlp] [--markdown]
        [--hooks N | --thread N]

Prints wall and CPU as median (min, max), the paired per-round ratios (goal ≤ 1.05 for both) and the
milliseconds pipetrace adds per step.

``--hooks N`` measures the adapter's own work instead, steadier than the ratio on a shared machine: N traced
runs in this process, the thread CPU pipetrace spends inside ``DagsterInstance.handle_new_event`` after
Dagster's own part (per event kind, and as a share of the run thread's CPU), then the Python calls it adds
to the run thread per run (cProfile, traced minus untraced). The median per run and its quartiles resist a
loaded machine better than the mean. Any checkout's venv runs this file, so two checkouts compare side by
side, alternating (``cd /work/wt/prev && .venvs/dagster/bin/python <this file> --hooks 20``, then this one).

``--thread N`` asks whether tracing slows Dagster's own part of the run thread: N paired rounds (order
alternating) of the run thread's CPU with and without pipetrace, each side's background work flushed
after its run; per round, traced minus untraced, then the same minus pipetrace's own time in
``handle_new_event`` (as ``--hooks`` counts it) and minus the run thread's garbage collections. Printed as
median, mean and quartiles, with the full (generation-2) collections each side had: those land on
whichever run crosses the collector's threshold, on either side, and cost a large part of a run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import SpanCounter, paired_rounds, print_per_kind, report_on_off  # noqa: E402

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


def hooks(job_def, runs: int) -> None:  # type: ignore[no-untyped-def]
    """See the module doc: thread CPU of pipetrace's part of each event, then the calls it adds per run."""
    import collections
    import cProfile
    import pstats

    from dagster._core.instance import DagsterInstance
    from pipetrace.integrations.dagster import instrument, uninstrument

    clock = time.thread_time
    dagster_done = [0.0]
    original = DagsterInstance.handle_new_event

    def dagster_part(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        dagster_done[0] = clock()

    DagsterInstance.handle_new_event = dagster_part  # pipetrace wraps this one
    instrument()
    traced_method = DagsterInstance.handle_new_event
    cpu: dict[str, float] = collections.defaultdict(float)
    count: collections.Counter[str] = collections.Counter()

    def measured(self, event, *args, **kwargs):  # type: ignore[no-untyped-def]
        traced_method(self, event, *args, **kwargs)
        spent = clock() - dagster_done[0]
        kind = event.dagster_event.event_type_value if event.dagster_event is not None else "-"
        cpu[kind] += spent
        count[kind] += 1

    DagsterInstance.handle_new_event = measured
    for _ in range(3):
        job_def.execute_in_process(run_config=QUIET)
    cpu.clear()
    count.clear()
    start = clock()
    per_run: list[float] = []
    for _ in range(runs):
        before = sum(cpu.values())
        job_def.execute_in_process(run_config=QUIET)
        per_run.append(sum(cpu.values()) - before)
    run_cpu = (clock() - start) / runs
    total = sum(cpu.values()) / runs
    per_run.sort()
    print(f"pipetrace in handle_new_event: {total * 1e3:.3f} ms thread CPU a run ({total / run_cpu:.2%} of the "
          f"run thread's {run_cpu * 1e3:.1f} ms), {runs} runs; per run median {per_run[runs // 2] * 1e3:.3f} ms "
          f"(quartiles {per_run[runs // 4] * 1e3:.3f}–{per_run[3 * runs // 4] * 1e3:.3f})")
    print_per_kind(cpu, count, runs)
    DagsterInstance.handle_new_event = traced_method
    calls: dict[str, float] = {}
    for mode in ("on", "off", "on", "off"):
        (instrument if mode == "on" else uninstrument)()
        profile = cProfile.Profile(clock)
        profile.enable()
        for _ in range(max(runs // 3, 1)):
            job_def.execute_in_process(run_config=QUIET)
        profile.disable()
        calls[mode] = calls.get(mode, 0) + pstats.Stats(profile).total_calls / max(runs // 3, 1) / 2  # type: ignore[attr-defined]
    print(f"Python calls on the run thread a run: {calls['off']:.0f} untraced, +{calls['on'] - calls['off']:.0f} "
          f"traced (+{calls['on'] / calls['off'] - 1:.2%})")
    uninstrument()
    DagsterInstance.handle_new_event = original


def thread(job_def, rounds: int) -> None:  # type: ignore[no-untyped-def]
    """See the module doc: the run thread's CPU traced minus untraced, per paired round, and what is left
    after pipetrace's own hook time and the collections."""
    import gc
    import statistics
    import threading

    import pipetrace
    from dagster._core.instance import DagsterInstance
    from pipetrace.integrations.dagster import instrument, uninstrument

    clock = time.thread_time
    original = DagsterInstance.handle_new_event
    done, state = [0.0], {"hook": 0.0, "gc": 0.0, "gc0": 0.0, "full": 0}
    main = threading.main_thread()

    def dagster_part(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        done[0] = clock()

    def collections(phase: str, info: dict[str, int]) -> None:
        if threading.current_thread() is not main:
            return
        if phase == "start":
            state["gc0"] = clock()
        else:
            state["gc"] += clock() - state["gc0"]
            state["full"] += info["generation"] == 2

    DagsterInstance.handle_new_event = dagster_part  # pipetrace wraps this one
    instrument()
    traced = DagsterInstance.handle_new_event

    def measured(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        traced(self, *args, **kwargs)
        state["hook"] += clock() - done[0]

    def once(mode: str, _round: int) -> tuple[float, float, float, int]:
        if mode == "on":
            instrument()
            DagsterInstance.handle_new_event = measured
        else:
            DagsterInstance.handle_new_event = traced
            uninstrument()
        state.update(hook=0.0, gc=0.0, full=0)
        start = clock()
        job_def.execute_in_process(run_config=QUIET)
        spent = clock() - start
        pipetrace.force_flush(30)
        return spent, state["hook"], state["gc"], int(state["full"])

    gc.callbacks.append(collections)
    try:
        once("off", 0)
        once("on", 0)
        runs, loads = paired_rounds(("off", "on"), rounds, once)
    finally:
        gc.callbacks.remove(collections)
        DagsterInstance.handle_new_event = traced
        uninstrument()
        DagsterInstance.handle_new_event = original
    on, off = runs["on"], runs["off"]
    med = statistics.median
    print(f"run thread CPU, {rounds} paired rounds, load {loads[0]} … {loads[-1]}: "
          f"without {med(r[0] for r in off) * 1e3:.1f} ms, with {med(r[0] for r in on) * 1e3:.1f} ms (medians); "
          f"pipetrace's hooks "
          f"{med(r[1] for r in on) * 1e3:.2f} ms; full collections without {sum(r[3] for r in off)}, "
          f"with {sum(r[3] for r in on)}")
    for label, part in (("traced - untraced", lambda r: r[0]), ("  minus the hooks", lambda r: r[0] - r[1]),
                        ("  minus the hooks and collections", lambda r: r[0] - r[1] - r[2])):
        diffs = sorted(part(a) - part(b) for a, b in zip(on, off, strict=True))
        q = len(diffs) // 4
        print(f"  {label:34s} median {med(diffs) * 1e3:+7.2f} ms  mean {statistics.mean(diffs) * 1e3:+7.2f}"
              f"  quartiles {diffs[q] * 1e3:+.1f} … {diffs[-q - 1] * 1e3:+.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--exporters", default="store,otlp", help="PIPETRACE_EXPORTERS for the traced runs")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--hooks", type=int, default=0, metavar="N",
                        help="measure the adapter's own work over N traced runs instead (see the module doc)")
    parser.add_argument("--thread", type=int, default=0, metavar="N",
                        help="the run thread's CPU with / without over N paired rounds instead (see the module doc)")
    args = parser.parse_args()

    import pipetrace
    from pipetrace.integrations.dagster import instrument, uninstrument

    with SpanCounter() as receiver:
        pipetrace.configure(home=tempfile.mkdtemp(prefix="pipetrace-bench-"), exporters=args.exporters,
                            otlp_endpoint=receiver.endpoint)
        job_def = build_job()
        assert len(job_def.nodes) == OPS
        if args.hooks:
            hooks(job_def, args.hooks)
            pipetrace.force_flush(30)  # before the receiver closes
            return
        if args.thread:
            thread(job_def, args.thread)
            pipetrace.force_flush(30)
            return
        spans: list[int] = []

        def once(mode: str, _round: int) -> tuple[float, float]:
            (instrument if mode == "on" else uninstrument)()
            before, received = receiver.spans, receiver.cpu_s
            t0, c0 = time.perf_counter(), time.process_time()
            result = job_def.execute_in_process(run_config=QUIET)
            elapsed = time.perf_counter() - t0
            pipetrace.force_flush(30)  # the traced run's export work belongs to it
            cpu = time.process_time() - c0 - (receiver.cpu_s - received)  # the collector's side is not the run's
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
