"""Celery overhead on a real prefork worker, finely interleaved: every side (untraced, the reference,
pipetrace, optionally a ``--before`` checkout) keeps one worker and one producer running for the whole
benchmark, and the sides take turns in short windows of ``--window-tasks`` no-op tasks, the order rotated
each round.

Why a second Celery benchmark: ``celery_overhead.py`` starts a fresh worker and producer per round and
runs 2,000 tasks in each, so a round takes ~10 s per side and the machine's slow spells (they last
minutes on the shared 2-core VMs this project runs on) land on one side and not the next. Its added CPU
per task moved from 0.39 to 1.13 of the reference's between runs of the same code. Here a round takes
~25 s for all three sides, many rounds cost no start-ups, and a slow spell hits every side alike.

What is the same as ``celery_overhead.py`` (whose pieces it reuses):

* the same worker (``-P prefork -c 2`` on Redis, gossip, mingle and heartbeat off) and task;
* **the reference** is ``opentelemetry-instrumentation-celery`` as its docs set it up (plain SDK
  ``TracerProvider`` + ``BatchSpanProcessor`` + OTLP/HTTP, in the pool children from
  ``worker_process_init`` and in the producer at start), no pipetrace in its processes;
* **pipetrace** runs as deployed (``pipetrace run --``, redaction on, ``--exporters``, default ``otlp``);
* both export to one local receiver that counts what it got (completeness printed per side).

What a window counts: the CPU of the side's producer and whole worker (main process and pool children,
every thread, from /proc) from the first publish until **a fixed time after it** (``--window``, longer
than every side's drain: the SDK exports a part batch after its 5 s ``schedule_delay``). Every side's
window lasts equally long, so the idle time in it (the worker's own timers and polling) is the same for
all, and each side's background export of the window's spans is in its own window: a window closes only
after the receiver has every span of it (one that drains later is longer, and says so).
Wall: first publish to last result. Each side runs one window before the rounds that is not counted (its
first export's connection, anything set up on first use).

Printed per side: CPU and wall per task, median (min, max) over windows; added per task (paired with the
untraced window of the same round); pipetrace added / reference added as the ratio of the medians, the
median of the per-round ratios and the ratio of the totals (goal, issue 24: <= 0.5 for CPU and wall).

``--aa`` adds a second untraced side, ``untraced-b``, run exactly as ``untraced``: its "added" CPU and wall
are the benchmark's noise floor (an A/A comparison), printed next to the traced sides'.

    python benchmarks/celery_windows.py [--rounds 20] [--window-tasks 500] [--window 7.5]
                                        [--exporters otlp] [--before <checkout>] [--aa] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import celery_overhead  # noqa: E402
from _harness import (  # noqa: E402
    TABLE_HEADER,
    SpanCounter,
    added_ratio,
    fmt_spread,
    load_range,
    paired_rounds,
    spread,
    summary_row,
    tree_cpu,
)
from celery_overhead import SideSetup, side_setup, spans_per_task, start_worker, stop_side  # noqa: E402

MODES = ("untraced", "otel", "pipetrace")
WARMUP = 200

PRODUCER = r'''
import json, sys, time
import os
import pipeline_app
from pipeline_app import noop
if os.environ.get("PIPETRACE_EXAMPLE_OTEL") == "reference":
    pipeline_app.setup_reference_tracing()
warm = int(sys.argv[1])
for r in [noop.delay() for _ in range(warm)]:  # connections, and every pool child's first-task imports
    r.get(timeout=120)
print("ready", flush=True)
for line in sys.stdin:
    n = int(line)
    t0 = time.perf_counter()
    results = [noop.delay() for _ in range(n)]
    for r in results:
        r.get(timeout=300)
    print(json.dumps({"seconds": time.perf_counter() - t0}), flush=True)
'''


@dataclass
class Side:
    """One side's long-lived worker and producer."""

    setup: SideSetup
    worker: subprocess.Popen[bytes]
    producer: subprocess.Popen[str]
    home: tempfile.TemporaryDirectory[str]

    @property
    def mode(self) -> str:
        return self.setup.mode


@dataclass
class Window:
    wall: float  # first publish -> last result
    drained: float  # first publish -> the receiver has every span of the window
    length: float  # first publish -> the CPU reading (the fixed window, or the drain if that came later)
    producer: float  # CPU seconds, every thread
    main: float  # the worker's main process
    pool: float  # its pool children
    got: int
    expected: int
    wire: int

    @property
    def cpu(self) -> float:
        return self.producer + self.main + self.pool


@dataclass
class Settings:
    tasks: int
    window: float
    exporters: str
    db: int


A_A = "untraced-b"
"""``--aa``: a second untraced side, the noise floor (no spans: ``spans_per_task`` knows only traced modes)."""


def add_side_arguments(ap: argparse.ArgumentParser) -> None:
    """The options every finely interleaved Celery benchmark shares (this one and ``celery_latency.py``)."""
    ap.add_argument("--db", type=int, default=0, help="Redis DB (shared Redis: 0, keys under a per-run prefix)")
    ap.add_argument("--before", type=Path, help="another checkout (with its .venvs/celery) as a 4th side")
    ap.add_argument("--exporters", default="otlp", help="pipetrace's exporters (the reference always exports OTLP)")
    ap.add_argument("--aa", action="store_true", help=f"add a second untraced side ({A_A}): the noise floor")
    ap.add_argument("--markdown", action="store_true", help="end with the closing-note table rows")


def side_modes(args: argparse.Namespace) -> tuple[str, ...]:
    """The sides :func:`add_side_arguments`' options ask for (``--before`` registers its checkout)."""
    modes: tuple[str, ...] = MODES
    if args.before is not None:
        celery_overhead.CHECKOUTS["before"] = args.before.resolve()
        modes = (*modes, "before")
    if args.aa:
        modes = (*modes, A_A)
    return modes


def start(mode: str, settings: Settings, receiver: SpanCounter) -> Side:
    """Start ``mode``'s worker and producer, run the warm-up and wait until its spans are out."""
    home = tempfile.TemporaryDirectory()
    setup = side_setup(mode, home.name, settings.db, settings.exporters, receiver.endpoint)
    receiver.reset()
    worker = start_worker(setup)
    producer = subprocess.Popen([*setup.prefix, str(setup.bin_dir / "python"), "-c", PRODUCER, str(WARMUP)],
                                cwd=setup.app_dir, env=setup.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
    side = Side(setup, worker, producer, home)
    assert producer.stdout is not None
    if producer.stdout.readline().strip() != "ready":
        stop(side, settings)
        raise RuntimeError(f"{mode}: producer did not start; worker log:\n{setup.log.read_text()[-2000:]}")
    want = WARMUP * spans_per_task(mode, settings.exporters)
    if not receiver.wait_for(want, 30):
        print(f"  {mode}: warm-up spans {receiver.spans}/{want}", file=sys.stderr)
    time.sleep(1.0)  # a late warm-up span is not counted in the first window
    return side


def stop(side: Side, settings: Settings) -> None:
    stop_side(side.setup, side.worker, side.producer, settings.db)
    side.home.cleanup()


def window(side: Side, settings: Settings, receiver: SpanCounter) -> Window:
    """One window: ``settings.tasks`` tasks published and their results waited for, then the CPU read
    ``settings.window`` seconds after the first publish (or when the last span arrived, if later)."""
    assert side.producer.stdin is not None and side.producer.stdout is not None
    expected = settings.tasks * spans_per_task(side.mode, settings.exporters)
    receiver.reset()
    main0, pool0 = tree_cpu(side.worker.pid)
    producer0 = sum(tree_cpu(side.producer.pid))
    t0 = time.perf_counter()
    side.producer.stdin.write(f"{settings.tasks}\n")
    side.producer.stdin.flush()
    line = side.producer.stdout.readline()
    if not line:
        raise RuntimeError(f"{side.mode}: producer ended; worker log:\n{side.setup.log.read_text()[-2000:]}")
    wall = float(json.loads(line)["seconds"])
    receiver.wait_for(expected, 60)
    drained = time.perf_counter() - t0
    rest = settings.window - (time.perf_counter() - t0)
    if rest > 0:
        time.sleep(rest)
    length = time.perf_counter() - t0
    main1, pool1 = tree_cpu(side.worker.pid)
    producer1 = sum(tree_cpu(side.producer.pid))
    return Window(wall, drained, length, producer1 - producer0, main1 - main0, pool1 - pool0, receiver.spans,
                  expected, receiver.bytes)


def compare_to_reference(runs: Mapping[str, object], added: Callable[[str, str], list[float]], name: str, label: str,
                         measure: str, loads: Sequence[str]) -> str:
    """Print every pipetrace side's added ``name`` over the reference's (ratio of medians with its paired bootstrap
    interval, ratio of totals, per-round ratios); return the closing-note row. Shared by this benchmark and
    ``celery_latency.py``."""
    ref = added("otel", name)
    figures = {}
    for mode in [m for m in runs if m not in ("untraced", "otel", A_A)]:
        ours = added(mode, name)
        ratio = added_ratio(ours, ref)
        of_totals = sum(ours) / sum(ref) if sum(ref) > 0 else float("nan")
        print(f"{mode} added / reference added, {label}: {ratio.of_medians:.2f} (ratio of medians; goal <= 0.5), "
              f"{ratio.ci_text()}; {of_totals:.2f} (ratio of totals); per-round ratios {fmt_spread(ratio.ratios)}")
        low, mid, high = spread(ratio.ratios)
        figures[mode] = (f"**{ratio.of_medians:.2f}** ({statistics.median(ours):.0f} µs; {ratio.ci_text()}; "
                         f"totals {of_totals:.2f}; per round {mid:.2f})", f"per round {low:.2f}–{high:.2f}")
    return summary_row(
        measure, figures["before"][0] if "before" in figures else "—", figures["pipetrace"][0],
        f"{statistics.median(ref):.0f} µs: otel-instrumentation-celery, plain SDK + BatchSpanProcessor + OTLP/HTTP",
        figures["pipetrace"][1], loads)


def report(args: argparse.Namespace, runs: dict[str, list[Window]], loads: list[str]) -> list[str]:
    """Print the figures; return the closing-note rows."""
    n = args.window_tasks

    def per_task(mode: str, name: str) -> list[float]:
        return [getattr(w, name) / n * 1e6 for w in runs[mode]]

    def added(mode: str, name: str) -> list[float]:
        """Added µs per task, paired with the untraced window of the same round."""
        return [(getattr(a, name) - getattr(u, name)) / n * 1e6 for a, u in zip(runs[mode], runs["untraced"],
                                                                                   strict=True)]

    print(f"celery on redis, prefork -c 2, {args.rounds} rounds of {n}-task windows per side (rotating order), "
          f"windows of {args.window:.1f} s, pipetrace exporters={args.exporters}; median (min, max) over windows; "
          f"load {load_range(loads)}")
    for mode, ws in runs.items():
        longer = sum(1 for w in ws if w.length > args.window + 0.5)
        print(f"  {mode:10s} cpu {fmt_spread(per_task(mode, 'cpu'), '.1f')} us a task, "
              f"wall {fmt_spread(per_task(mode, 'wall'), '.1f')} us a task, "
              f"drained {fmt_spread([w.drained for w in ws])} s"
              + (f"  ({longer} windows longer than {args.window:.1f} s: drained later)" if longer else ""))
        if mode == "untraced":
            continue
        got, want = sum(w.got for w in ws), sum(w.expected for w in ws)
        wire = sum(w.wire for w in ws) / got if got else 0.0
        print(f"    added per task: cpu {fmt_spread(added(mode, 'cpu'), '.1f')} us "
              f"(producer {statistics.median(added(mode, 'producer')):.1f}, "
              f"worker main {statistics.median(added(mode, 'main')):.1f}, "
              f"pool {statistics.median(added(mode, 'pool')):.1f}), "
              f"wall {fmt_spread(added(mode, 'wall'), '.1f')} us; "
              f"spans received {got}/{want}, {wire:.0f} bytes a span on the wire")
    if A_A in runs:
        for name, label in (("cpu", "CPU"), ("wall", "wall")):
            floor, ref = added(A_A, name), added("otel", name)
            low, mid, high = spread(floor)
            print(f"noise floor ({A_A} against untraced, both untraced), added {label} per task: {mid:.1f} us "
                  f"(min {low:.1f}, max {high:.1f}), mean {statistics.fmean(floor):.1f} us = "
                  f"{statistics.median(floor) / statistics.median(ref):+.2f} of the reference's median added {label}")
    rows = []
    for name, label in (("cpu", "CPU"), ("wall", "wall")):
        rows.append(compare_to_reference(
            runs, added, name, label,
            f"Celery added {label} per task, pipetrace / reference, real prefork worker, finely interleaved "
            f"(`celery_windows.py --rounds {args.rounds} --window-tasks {n}`, exporters {args.exporters})", loads))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--window-tasks", type=int, default=500, help="tasks per side per window")
    ap.add_argument("--window", type=float, default=7.5,
                    help="seconds from a window's first publish to its CPU reading, every side alike")
    add_side_arguments(ap)
    args = ap.parse_args()
    settings = Settings(args.window_tasks, args.window, args.exporters, args.db)
    modes = side_modes(args)

    def echo(mode: str, r: int, w: Window) -> None:
        print(f"  round {r + 1} {mode:10s} {w.wall:5.2f} s wall {w.drained:5.2f} s drained "
              f"{w.producer:5.2f} s producer {w.main:5.2f} s main {w.pool:5.2f} s pool  spans {w.got}/{w.expected}",
              file=sys.stderr, flush=True)

    with SpanCounter() as receiver:
        sides: dict[str, Side] = {}
        try:
            for mode in modes:
                sides[mode] = start(mode, settings, receiver)
            for mode in modes:  # one window each, not counted: a side's first export, first window's lazy set-ups
                window(sides[mode], settings, receiver)
            runs, loads = paired_rounds(modes, args.rounds, lambda mode, _r: window(sides[mode], settings, receiver),
                                        echo=echo)
        finally:
            for side in sides.values():
                stop(side, settings)
    rows = report(args, runs, loads)
    if args.markdown:
        print(TABLE_HEADER)
        print("\n".join(rows))


if __name__ == "__main__":
    main()
