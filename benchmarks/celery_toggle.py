"""Celery's added wall per task measured inside the same processes: every side's tracing is turned off and on
between windows of the same producer and worker, and what tracing adds is a window with it on less the window
with it off next to it, in those processes.

Why a fourth Celery wall benchmark: ``celery_latency.py`` takes what a side adds over an untraced side's windows,
which run in other processes. Each fresh process has its own speed (its memory layout, where its pages and hash
tables fell), and on this project's shared 2-core VMs that moves a 2–4 ms round trip by hundreds of µs: two
untraced sides differ by −774…654 µs over 30 rounds (``celery_latency.py --one-cpu --aa``), against the 200–350
µs the reference adds. Here the "off" window and the "on" window of a side run in the same producer, worker and
pool children, back to back, so a process's own speed is in both and cancels; what is left is the work tracing
does per task. The untraced side does the same switching with nothing to switch: its "on" less "off" is the
noise floor, printed.

What is switched (nothing else; the processes are never told to do anything else between windows):

* **pipetrace**, started as deployed (``pipetrace run --``, redaction on, ``--exporters``, default ``otlp``): the
  Celery and kombu adapters, ``uninstrument()`` / ``instrument()`` (the adapters' public switch: every signal
  receiver and patch removed and put back). The worker's main process is left as it is: with OTLP export
  pipetrace does nothing there per task (the run closer reads a store; Celery's consumer calls its own
  ``on_message``, not kombu's ``Consumer.receive``).
* **The reference**, set up as its docs tell a user (plain SDK provider, ``BatchSpanProcessor``, OTLP/HTTP;
  ``CeleryInstrumentor().instrument()`` in the producer and in each pool child from ``worker_process_init``):
  ``CeleryInstrumentor().uninstrument()`` / ``.instrument()``.
* In the producer between windows; in each pool child by a switch task (``-I`` of a module this script writes:
  it keeps a child busy a moment so that each child gets one, and turns the child's tracing at that task's
  ``task_postrun``, after the instrumentation's own receivers of that signal ran, so no span is left open or
  half made). The producer turns itself off before it sends them and on after them: a switch publish is never
  traced. The receiver checks the switch: an "off" window must bring no span, an "on" window every span.

Every window is preceded by the same steps, whichever side and state: the switch (sent even when the state stays),
then the same quiet ``--gap`` (6 s: longer than the SDK's 5 s batch delay, so the spans of a switch task and the
window before are exported before the window). Each side's two windows of a round run back to back, "off" first in
even rounds and "on" first in odd ones; the sides' order is shuffled each round; every side is started afresh every
``--restart-every`` rounds (each start samples another process speed, which multiplies the added time a little).
Placement as ``celery_latency.py``: unbound, ``--pin``, or ``--one-cpu`` (producers, workers and a private Redis on
CPU 0, the receiver on CPU 1: the whole round trip on one core).

Judged by the ratio of the medians of the per-round added round trips (on less off, same processes), with a paired
bootstrap 95 % interval over rounds (:func:`_harness.added_ratio`): the goal (issue 24, ≤ 0.5) is met only when the
interval's upper end is under it. The window means' ratio and the publish's are printed too.

    python benchmarks/celery_toggle.py [--rounds 20] [--window-tasks 400] [--gap 6] [--restart-every 5]
                                       [--pin | --one-cpu] [--exporters otlp] [--before <checkout>] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import TABLE_HEADER, SpanCounter, fmt_spread, load_range, paired_rounds, shuffled, spread  # noqa: E402
from celery_latency import Settings, _placement, private_redis  # noqa: E402
from celery_overhead import CHECKOUTS, side_setup, spans_per_task, start_worker, stop_side  # noqa: E402
from celery_windows import Side, compare_to_reference  # noqa: E402

WARMUP = 200
SEQUENTIAL_WARMUP = 100
POOL = 2  # the worker's ``-c``
SWITCH_MODULE = "pipetrace_bench_switch"
KIND = {"untraced": "none", "otel": "reference", "pipetrace": "pipetrace", "before": "pipetrace"}
"""What each side's switch turns: nothing, the reference's instrumentor, pipetrace's adapters."""
STATES = ("off", "on")

SWITCH = r'''
"""celery_toggle.py's switch: this process's Celery tracing off or on, between windows."""
import os, time

from celery.signals import task_postrun
from pipeline_app import app

KIND = os.environ.get("PIPETRACE_BENCH_SWITCH", "none")
_pending = []
_adapters = []


def turn(on):
    if KIND == "pipetrace":
        from pipetrace.integrations import celery, kombu
        if not _adapters:  # the adapters ``pipetrace run`` turned on here, and only those
            _adapters.extend(a for a in (celery, kombu) if a.is_instrumented())
        for adapter in _adapters:
            adapter.instrument() if on else adapter.uninstrument()
    elif KIND == "reference":
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        instrumentor = CeleryInstrumentor()
        if on != instrumentor.is_instrumented_by_opentelemetry:  # (it warns when asked for the state it is in)
            instrumentor.instrument() if on else instrumentor.uninstrument()


@app.task(name="pipetrace_bench.trace_switch")
def trace_switch(on):
    _pending.append(bool(on))
    time.sleep(0.2)  # this child stays busy a moment: the next switch task goes to another child
    return os.getpid()


def _after_task(**_):
    # Celery sends a signal to the receivers it had when the send began: at this task's ``task_postrun`` the
    # instrumentation's own receiver still runs when turned off here, and a receiver connected here does not
    while _pending:
        turn(_pending.pop())


task_postrun.connect(_after_task, weak=False)
'''

PRODUCER = r'''
import json, os, statistics, sys, time
import pipeline_app
from pipeline_app import noop
import pipetrace_bench_switch as switch
if os.environ.get("PIPETRACE_EXAMPLE_OTEL") == "reference":
    pipeline_app.setup_reference_tracing()
warm, sequential, pool = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for r in [noop.delay() for _ in range(warm)]:  # connections, and every pool child's first-task imports
    r.get(timeout=120)
for _ in range(sequential):  # the one-at-a-time path warm too (the result channel's subscribe)
    noop.delay().get(timeout=60)
print("ready", flush=True)
clock = time.perf_counter
for line in sys.stdin:
    command, value = line.split()
    if command == "switch":
        on = value == "on"
        switch.turn(False)  # a switch task's publish is never traced
        children = set()
        for _ in range(20):
            sent = [switch.trace_switch.delay(on) for _ in range(2 * pool)]
            children.update(r.get(timeout=60) for r in sent)
            if len(children) >= pool:
                break
        if on:
            switch.turn(True)
        print(json.dumps({"children": len(children)}), flush=True)
        continue
    publish, trip = [], []
    for _ in range(int(value)):
        t0 = clock()
        r = noop.delay()
        t1 = clock()
        r.get(timeout=60)
        t2 = clock()
        publish.append(t1 - t0)
        trip.append(t2 - t0)
    print(json.dumps({"trip": statistics.median(trip), "publish": statistics.median(publish),
                      "mean": statistics.fmean(trip)}), flush=True)
'''


@dataclass
class Window:
    state: str  # "off" or "on"
    trip: float  # median round trip, seconds
    publish: float  # median delay() call, seconds
    mean: float  # mean round trip, seconds
    got: int  # spans the receiver got in the window and its drain
    expected: int


@dataclass
class Pair:
    """One side's two windows of a round, in the same processes."""

    off: Window
    on: Window

    def added(self, name: str) -> float:
        """µs a task tracing added: the "on" window less the "off" one."""
        return (getattr(self.on, name) - getattr(self.off, name)) * 1e6


def launch(mode: str, settings: Settings, receiver: SpanCounter) -> Side:
    """Start ``mode``'s worker (with the switch module) and producer; the producer runs its warm-ups."""
    home = tempfile.TemporaryDirectory()
    Path(home.name, f"{SWITCH_MODULE}.py").write_text(SWITCH)
    setup = side_setup(mode, home.name, settings.db, settings.exporters, receiver.endpoint, settings.redis_port)
    setup.env["PYTHONPATH"] = os.pathsep.join(p for p in (home.name, setup.env.get("PYTHONPATH", "")) if p)
    setup.env["PIPETRACE_BENCH_SWITCH"] = KIND.get(mode, "pipetrace")
    on_worker, on_producer = _placement(settings)
    worker = start_worker(setup, on_worker, extra=("-I", SWITCH_MODULE))
    producer = subprocess.Popen([*setup.prefix, str(setup.bin_dir / "python"), "-c", PRODUCER, str(WARMUP),
                                 str(SEQUENTIAL_WARMUP), str(POOL)], cwd=setup.app_dir, env=setup.env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=on_producer)
    return Side(setup, worker, producer, home)


def _ask(side: Side, command: str) -> dict[str, float]:
    assert side.producer.stdin is not None and side.producer.stdout is not None
    side.producer.stdin.write(command + "\n")
    side.producer.stdin.flush()
    line = side.producer.stdout.readline()
    if not line:
        raise RuntimeError(f"{side.mode}: producer ended; worker log:\n{side.setup.log.read_text()[-2000:]}")
    answer: dict[str, float] = json.loads(line)
    return answer


def window(side: Side, state: str, settings: Settings, receiver: SpanCounter) -> Window:
    """Switch ``side`` to ``state``, wait the gap, run ``settings.tasks`` round trips, drain their spans."""
    children = _ask(side, f"switch {state}")["children"]
    if children < POOL:
        raise RuntimeError(f"{side.mode}: the switch reached {children} of {POOL} pool children")
    time.sleep(settings.gap)  # the switch tasks' spans and the window before exported; the same quiet time
    traced = state == "on"
    expected = settings.tasks * spans_per_task(side.mode, settings.exporters) if traced else 0
    receiver.reset()
    got = _ask(side, f"run {settings.tasks}")
    receiver.wait_for(expected, 60 if traced else 0)
    return Window(state, got["trip"], got["publish"], got["mean"], receiver.spans, expected)


def stop(side: Side, settings: Settings) -> None:
    stop_side(side.setup, side.worker, side.producer, settings.db)
    side.home.cleanup()


def measure(args: argparse.Namespace, settings: Settings, modes: tuple[str, ...]) -> list[str]:
    """Every round's pairs of windows, then the report; the closing-note rows."""

    def echo(mode: str, r: int, pair: Pair) -> None:
        print(f"  round {r + 1} {mode:10s} off {pair.off.trip * 1e6:7.1f} us on {pair.on.trip * 1e6:7.1f} us "
              f"added {pair.added('trip'):6.1f} us (publish {pair.added('publish'):6.1f}); spans off "
              f"{pair.off.got}/{pair.off.expected} on {pair.on.got}/{pair.on.expected}", file=sys.stderr, flush=True)

    with SpanCounter() as receiver:
        sides: dict[str, Side] = {}

        def start_all(r: int) -> None:
            for side in sides.values():
                stop(side, settings)
            sides.clear()
            for mode in shuffled(modes, r, seed=11):
                sides[mode] = launch(mode, settings, receiver)
            for side in sides.values():
                assert side.producer.stdout is not None
                if side.producer.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"{side.mode}: producer did not start; worker log:\n"
                                       f"{side.setup.log.read_text()[-2000:]}")

        def order(ms: Sequence[str], r: int) -> list[str]:
            return shuffled(ms, r, seed=5)

        def run(mode: str, r: int) -> Pair:
            every = args.restart_every
            if mode == order(modes, r)[0] and (r == 0 or (every > 0 and r % every == 0)):
                start_all(r)
            states = STATES if r % 2 == 0 else STATES[::-1]
            done = {state: window(sides[mode], state, settings, receiver) for state in states}
            return Pair(done["off"], done["on"])

        try:
            pairs, loads = paired_rounds(modes, args.rounds, run, echo=echo, order=order)
        finally:
            for side in sides.values():
                stop(side, settings)
    return report(args, pairs, loads)


def report(args: argparse.Namespace, pairs: dict[str, list[Pair]], loads: list[str]) -> list[str]:
    """Print the figures; return the closing-note rows."""

    def added(mode: str, name: str) -> list[float]:
        return [p.added(name) for p in pairs[mode]]

    print(f"celery on redis, prefork -c {POOL}, one task at a time, tracing switched off and on in the same "
          f"processes: {args.rounds} rounds of two {args.window_tasks}-task windows per side (sides shuffled each "
          f"round, started afresh every {args.restart_every} rounds; pinned {args.pin}; one CPU {args.one_cpu}), "
          f"pipetrace exporters={args.exporters}; window medians, median (min, max) over rounds; "
          f"load {load_range(loads)}")
    for mode, ps in pairs.items():
        off_spans = sum(p.off.got for p in ps)
        got, want = sum(p.on.got for p in ps), sum(p.on.expected for p in ps)
        print(f"  {mode:10s} round trip off {fmt_spread([p.off.trip * 1e6 for p in ps], '.1f')} us, "
              f"on {fmt_spread([p.on.trip * 1e6 for p in ps], '.1f')} us")
        print(f"    added (on less off): round trip {fmt_spread(added(mode, 'trip'), '.1f')} us, "
              f"mean {fmt_spread(added(mode, 'mean'), '.1f')} us, publish {fmt_spread(added(mode, 'publish'), '.1f')}"
              f" us; spans received: on {got}/{want}, off {off_spans} (0 expected)")
    floor, ref = added("untraced", "trip"), added("otel", "trip")
    low, mid, high = spread(floor)
    print(f"noise floor (the untraced side's on less off, nothing switched), round trip: {mid:.1f} us (min {low:.1f}, "
          f"max {high:.1f}) = {mid / statistics.median(ref):+.2f} of the reference's median added")
    def across(mode: str, name: str) -> list[float]:
        """µs a task over the untraced side's windows of the same round (other processes: celery_latency.py's way)."""
        return [(getattr(p.on, name) - (getattr(u.off, name) + getattr(u.on, name)) / 2) * 1e6
                for p, u in zip(pairs[mode], pairs["untraced"], strict=True)]

    print("the same windows the other way, each traced window less the untraced side's (other processes, "
          "celery_latency.py's way; each process's own speed in it):")
    compare_to_reference(pairs, across, "trip", "round trip over the untraced side", "", loads)
    rows = []
    for name, label in (("trip", "round trip (wall a caller waits for)"),
                        ("mean", "round trip, mean of the window (its slow calls: a batch thread's bursts)"),
                        ("publish", "publish (producer's part)")):
        rows.append(compare_to_reference(
            pairs, added, name, label,
            f"Celery added wall per task, {label}, pipetrace / reference, tracing switched off and on in the same "
            f"processes, real prefork worker, one task at a time (`celery_toggle.py --rounds {args.rounds} "
            f"--window-tasks {args.window_tasks} --restart-every {args.restart_every}"
            f"{' --pin' if args.pin else ''}{' --one-cpu' if args.one_cpu else ''}`, exporters {args.exporters}; "
            f"noise floor {mid:+.0f} µs, {low:.0f}…{high:.0f})", loads))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--window-tasks", type=int, default=400, help="round trips per window")
    ap.add_argument("--db", type=int, default=0, help="Redis DB (shared Redis: 0, keys under a per-run prefix)")
    ap.add_argument("--before", type=Path, help="another checkout (with its .venvs/celery) as a 4th side")
    ap.add_argument("--exporters", default="otlp", help="pipetrace's exporters (the reference always exports OTLP)")
    ap.add_argument("--gap", type=float, default=6.0,
                    help="seconds between a switch and the window after it, every side and state alike (longer than "
                         "the SDK's 5 s batch delay)")
    ap.add_argument("--restart-every", type=int, default=5,
                    help="start every side's worker and producer afresh every N rounds (0: never)")
    ap.add_argument("--pin", action="store_true",
                    help="every side's producer on CPU 0, its worker (main process and pool children) on CPU 1")
    ap.add_argument("--one-cpu", action="store_true",
                    help="every side's producer and worker, and a private Redis of this run, on CPU 0; this script "
                         "(the receiver) on CPU 1")
    ap.add_argument("--markdown", action="store_true", help="end with the closing-note table rows")
    args = ap.parse_args()
    if args.pin and args.one_cpu:
        ap.error("--pin and --one-cpu are two different placements: choose one")
    modes: tuple[str, ...] = ("untraced", "otel", "pipetrace")
    if args.before is not None:
        CHECKOUTS["before"] = args.before.resolve()
        modes = (*modes, "before")
    with ExitStack() as stack:
        port = 6379
        if args.one_cpu:
            os.sched_setaffinity(0, {1})  # the receiver (this process) off the measured core
            port = stack.enter_context(private_redis(0))
        settings = Settings(args.window_tasks, args.exporters, args.db, args.gap, args.pin, args.one_cpu, port)
        rows = measure(args, settings, modes)
    if args.markdown:
        print(TABLE_HEADER)
        print("\n".join(rows))


if __name__ == "__main__":
    main()
