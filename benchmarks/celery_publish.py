"""Celery's publish alone on a real Redis: ``noop.delay()`` timed call by call in a producer with no worker,
untraced / the reference / pipetrace, each side's producer process bound to one CPU.

Why: the producer's part of a round trip (``celery_latency.py``'s "publish") is measured there with a worker,
a pool and a result channel sharing the machine, so a window's median moves by hundreds of µs with where
things ran. Here nothing else runs: one process publishes to a real Redis broker (the messages go to a queue no
worker reads; its keys are deleted after each side), so what tracing adds to ``delay()`` — its handlers, its
header, its wrapper around kombu's ``Producer.publish`` — is read without a worker, a pool or a result channel
on the machine. What is left is each fresh process's own speed: on this project's 2-core VMs an untraced
producer's median ``delay()`` moves by up to ±130 µs from one start to the next (12 rounds, 455–723 µs), as
much as tracing adds, hence the rounds and the interval. It is also the check of the instruction counts
(``celery_task_instructions.py --path before_task_publish,after_task_publish``): those count the handlers
in a process that publishes on ``memory://``; here the same handlers run between real socket writes, with
the caches that leaves them.

Per side and round, one fresh process (``pipetrace run --`` for pipetrace; the reference set up as its docs
tell a user, as in ``celery_overhead.py``): ``--warm`` publishes, then ``--calls`` publishes each timed (wall)
and its thread's CPU read (``time.thread_time``, the publishing thread only: the export threads' work is not in
a caller's ``delay()``, and is ``celery_overhead.py``'s measure). The window medians are printed, median (min,
max) over rounds, the order shuffled each round; added = a side's median less the untraced side's of the same
round; pipetrace added / reference added as the ratio of the medians with a paired bootstrap interval
(:func:`_harness.added_ratio`). Both sides export OTLP to one local receiver, which must get every span
(completeness printed; the producer exits after its last publish and each side's processor sends the rest).

``--count instructions``: instead of timing, each side's producer runs under callgrind (every thread, export
included) at two publish counts, ``--warm`` and ``--warm + --calls``, and prints instructions per ``delay()``
(start-up cancels out); ``--count syscalls``: the same under ``strace -f -c``, system calls per ``delay()`` by
name. Both repeat exactly (callgrind with a fixed hash seed), so they tell whether a timed difference is more
work, more kernel crossings, or the same work costing more per instruction. Needs ``valgrind`` / ``strace``.

    python benchmarks/celery_publish.py [--rounds 10] [--calls 2000] [--warm 300] [--cpu 0] [--markdown]
                                        [--count instructions|syscalls]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (  # noqa: E402
    TABLE_HEADER,
    SpanCounter,
    added_ratio,
    fmt_spread,
    load_range,
    paired_rounds,
    shuffled,
    spread,
    summary_row,
)
from celery_overhead import _delete_keys, side_setup  # noqa: E402

MODES = ("untraced", "otel", "pipetrace")

PRODUCER = r'''
import json, os, statistics, sys, time
import pipeline_app
from pipeline_app import noop
if os.environ.get("PIPETRACE_EXAMPLE_OTEL") == "reference":
    pipeline_app.setup_reference_tracing()
warm, calls = int(sys.argv[1]), int(sys.argv[2])
for _ in range(warm):
    noop.delay()
wall, cpu = [], []
clock, thread_clock = time.perf_counter, time.thread_time
for _ in range(calls):
    t0, c0 = clock(), thread_clock()
    noop.delay()
    c1, t1 = thread_clock(), clock()
    wall.append(t1 - t0)
    cpu.append(c1 - c0)
print(json.dumps({"wall": statistics.median(wall), "cpu": statistics.median(cpu), "mean": statistics.fmean(wall)}))
'''


COUNTED = r'''
import os, sys
import pipeline_app
from pipeline_app import noop
if os.environ.get("PIPETRACE_EXAMPLE_OTEL") == "reference":
    pipeline_app.setup_reference_tracing()
for _ in range(int(sys.argv[1])):
    noop.delay()
'''


def counted(mode: str, publishes: int, how: str, args: argparse.Namespace, receiver: SpanCounter) -> dict[str, int]:
    """A producer of ``mode`` making ``publishes`` publishes under callgrind (``{"instructions": n}``, every
    thread) or ``strace -f -c`` (calls by system call name)."""
    with tempfile.TemporaryDirectory() as home:
        setup = side_setup(mode, home, args.db, "otlp", receiver.endpoint)
        out = Path(home) / "counted"
        tool = (["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] if how == "instructions"
                else ["strace", "-f", "-c", "-o", str(out)])
        env = dict(setup.env, PYTHONHASHSEED="0")
        try:
            done = subprocess.run([*setup.prefix, *tool, str(setup.bin_dir / "python"), "-c", COUNTED, str(publishes)],
                                  cwd=setup.app_dir, env=env, capture_output=True, text=True, timeout=3600)
        finally:
            _delete_keys(args.db, setup.prefix_key)
        if how == "instructions":
            found = re.search(r"Collected : (\d+)", done.stderr)
            if done.returncode != 0 or not found:
                raise RuntimeError(f"{mode}: exit {done.returncode}\n{done.stderr[-3000:]}")
            return {"instructions": int(found.group(1))}
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"{mode}: exit {done.returncode}\n{done.stderr[-3000:]}")
        calls: dict[str, int] = {}
        for line in out.read_text().splitlines():  # "% time  seconds  usecs/call  calls  [errors]  syscall"
            fields = line.split()
            if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != "total":
                calls[fields[-1]] = int(fields[3])
        return calls


def count_report(args: argparse.Namespace) -> None:
    """Per side, what one ``delay()`` costs in instructions or system calls (two publish counts, differenced)."""
    low, high = args.warm, args.warm + args.calls
    per: dict[str, dict[str, float]] = {}
    with SpanCounter() as receiver:
        for mode in MODES:
            a, b = (counted(mode, n, args.count, args, receiver) for n in (low, high))
            per[mode] = {k: (b.get(k, 0) - a.get(k, 0)) / (high - low) for k in a.keys() | b.keys()}
    print(f"celery delay() on redis, no worker, {args.count} per delay() ({high} - {low} publishes, every thread)")
    totals = {mode: sum(v.values()) for mode, v in per.items()}
    for mode in MODES:
        top = sorted(((v, k) for k, v in per[mode].items() if abs(v) >= 0.05), reverse=True)
        detail = "" if args.count == "instructions" else ": " + ", ".join(f"{k} {v:.2f}" for v, k in top)
        digits = 0 if args.count == "instructions" else 2
        print(f"  {mode:9s} {totals[mode]:,.{digits}f} a delay(), added {totals[mode] - totals['untraced']:,.{digits}f}"
              f"{detail}")
    ref = totals["otel"] - totals["untraced"]
    if ref > 0:
        ours = totals["pipetrace"] - totals["untraced"]
        print(f"pipetrace added / reference added, {args.count}: {ours / ref:.3f}")


def one_side(mode: str, args: argparse.Namespace, receiver: SpanCounter) -> dict[str, float]:
    """A fresh producer of ``mode``: its medians (seconds) and the spans the receiver got from it."""
    with tempfile.TemporaryDirectory() as home:
        setup = side_setup(mode, home, args.db, "otlp", receiver.endpoint)
        receiver.reset()
        try:
            done = subprocess.run([*setup.prefix, str(setup.bin_dir / "python"), "-c", PRODUCER, str(args.warm),
                                   str(args.calls)], cwd=setup.app_dir, env=setup.env, capture_output=True, text=True,
                                  timeout=600, preexec_fn=lambda: os.sched_setaffinity(0, {args.cpu}))
        finally:
            _delete_keys(args.db, setup.prefix_key)
        if done.returncode != 0:
            raise RuntimeError(f"{mode}: producer failed:\n{done.stderr[-2000:]}")
        expected = 0 if mode == "untraced" else args.warm + args.calls  # one send span a publish, no worker
        receiver.wait_for(expected, 30)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        return {**figures, "got": receiver.spans, "expected": expected}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--calls", type=int, default=2000, help="publishes timed per side and round")
    ap.add_argument("--warm", type=int, default=300, help="publishes before the timed ones")
    ap.add_argument("--cpu", type=int, default=0, help="the CPU every producer is bound to")
    ap.add_argument("--db", type=int, default=0, help="Redis DB (shared Redis: keys under a per-side prefix)")
    ap.add_argument("--markdown", action="store_true", help="end with the closing-note table rows")
    ap.add_argument("--count", choices=("instructions", "syscalls"),
                    help="count per delay() instead of timing (callgrind or strace; no rounds: counts repeat)")
    args = ap.parse_args()
    if args.count:
        count_report(args)
        return

    def echo(mode: str, r: int, w: dict[str, float]) -> None:
        print(f"  round {r + 1} {mode:9s} delay() {w['wall'] * 1e6:6.1f} us, thread CPU {w['cpu'] * 1e6:6.1f} us, "
              f"spans {w['got']:.0f}/{w['expected']:.0f}", file=sys.stderr, flush=True)

    with SpanCounter() as receiver:
        runs, loads = paired_rounds(MODES, args.rounds, lambda m, r: one_side(m, args, receiver), echo=echo,
                                    order=shuffled)
    print(f"celery delay() on redis, no worker, one producer process a side and round bound to CPU {args.cpu}: "
          f"{args.rounds} rounds of {args.calls} timed publishes after {args.warm}, order shuffled each round; "
          f"medians of each round, median (min, max) over rounds; load {load_range(loads)}")

    def added(mode: str, name: str) -> list[float]:
        return [(a[name] - u[name]) * 1e6 for a, u in zip(runs[mode], runs["untraced"], strict=True)]

    for mode in MODES:
        ws = runs[mode]
        print(f"  {mode:9s} delay() {fmt_spread([w['wall'] * 1e6 for w in ws], '.1f')} us, thread CPU "
              f"{fmt_spread([w['cpu'] * 1e6 for w in ws], '.1f')} us, "
              f"mean {statistics.median(w['mean'] * 1e6 for w in ws):.1f} us; "
              f"spans received {sum(w['got'] for w in ws):.0f}/{sum(w['expected'] for w in ws):.0f}")
        if mode != "untraced":
            print(f"    added: delay() {fmt_spread(added(mode, 'wall'), '.1f')} us, thread CPU "
                  f"{fmt_spread(added(mode, 'cpu'), '.1f')} us")
    rows = []
    for name, label in (("wall", "delay() wall"), ("cpu", "delay() thread CPU"), ("mean", "delay() wall, mean")):
        ours, ref = added("pipetrace", name), added("otel", name)
        ratio = added_ratio(ours, ref)
        low, mid, high = spread(ratio.ratios)
        print(f"pipetrace added / reference added, {label}: {ratio.of_medians:.2f} (ratio of medians; goal <= 0.5), "
              f"{ratio.ci_text()}; per-round ratios {fmt_spread(ratio.ratios)}")
        rows.append(summary_row(
            f"Celery publish alone, {label} added, pipetrace / reference, real Redis, no worker, producer on one CPU "
            f"(`celery_publish.py --rounds {args.rounds} --calls {args.calls}`)", "—",
            f"**{ratio.of_medians:.2f}** ({statistics.median(ours):.1f} µs; {ratio.ci_text()})",
            f"{statistics.median(ref):.1f} µs: otel-instrumentation-celery, plain SDK + BatchSpanProcessor + OTLP/HTTP",
            f"per round {low:.2f}–{high:.2f} (median {mid:.2f})", loads))
    if args.markdown:
        print(TABLE_HEADER)
        print("\n".join(rows))


if __name__ == "__main__":
    main()
