"""Celery's added wall per task, with the noise of a shared machine taken out two ways: every side's tracing
is switched off and on in the same processes, and the sides take turns round trip by round trip.

Why a fourth Celery wall benchmark: ``celery_latency.py`` takes what a side adds over an untraced side's
windows, which run in other processes and at other moments. On this project's shared 2-core VMs both move a
2–4 ms round trip by hundreds of µs: each fresh process has its own speed (its memory layout, where its pages
and hash tables fell), and slow spells of the host last seconds and land on one window and not the next. Two
untraced sides differed by −774…654 µs over 30 rounds (``celery_latency.py --one-cpu --aa``), against the
200–450 µs the reference adds. Here:

* **The same processes, off and on.** A round has two windows, one with every side's tracing switched off and
  one with it on, in the same producers, workers and pool children.
* **Round trip by round trip.** In a window the sides take turns one round trip at a time (``noop.delay().get()``,
  the order drawn afresh each cycle, a ``--pause`` after each turn so that what a worker does after the result is
  done before the next side's trip): a slow spell of the host lands on every side alike. Each trip then starts
  with caches the other sides' processes used last (a producer that publishes now and then). ``--burst N``: a side
  makes N trips one after the other in its turn, so the trips after the first run warm and what a worker does
  after a result (``task_postrun``, ending the span) delays its own next trip, as in a busy worker.
* **Added = a difference of differences**: a side's "on" median less the untraced side's in the same window
  (a slow spell cancels), less the same for the "off" window (the side's processes' own speed cancels). The
  untraced side (switching nothing) is the baseline; ``--aa`` adds a second one whose added time is the noise
  floor, printed. The plain "on" less "off" of each side is printed too, and the same difference of differences
  for the CPU a trip of each side's producer and worker (process trees, every thread, from /proc in 10 ms ticks:
  25 µs a trip over 400 trips), while the trips ran and until the window's spans were exported: where the added
  wall goes.

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
  ``task_postrun``: Celery sends a signal to the receivers it had when the send began, so an instrumentation
  turned off there still ends that task's span, and one turned on there begins with the next task — no span is
  left open or half made). The producer turns itself off before it sends them and on after them: a switch
  publish is never traced. The receiver checks the switch: an "off" window must bring no span, an "on" window
  every span.

Every window is preceded by the same steps: every side switched (sent even when the state stays), then the same
quiet ``--gap`` (6 s: longer than the SDK's 5 s batch delay, so the spans of the switch tasks and of the window
before are exported first). "Off" first in even rounds, "on" first in odd ones; every side is started afresh every
``--restart-every`` rounds. Where a side's background work lands: on one core it competes with every side's trips
for the CPU, and through its own process's GIL it delays that side's next publish or task — so only part of it is
on the side's own wall, and the window means are not printed (``celery_latency.py`` keeps each side's export in its
own window; the CPU columns here count all of it in the side's processes).
Placement as ``celery_latency.py``: unbound, ``--pin``, or ``--one-cpu`` (producers, workers and a private Redis on
CPU 0, this script and the receiver on CPU 1: the whole round trip on one core).

Judged by the ratio of the medians of the per-round added round trips, with a paired bootstrap 95 % interval over
rounds (:func:`_harness.added_ratio`): the goal (issue 24, ≤ 0.5) is met only when the interval's upper end is
under it.

    python benchmarks/celery_toggle.py [--rounds 20] [--window-tasks 400] [--pause 0.003] [--burst 1] [--gap 6]
                                       [--restart-every 5] [--pin | --one-cpu] [--exporters otlp] [--aa]
                                       [--before <checkout>] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import SpanCounter, fmt_spread, load, load_range, shuffled, spread, tree_cpu  # noqa: E402
from celery_latency import PRODUCER_START, Settings, _placement, add_placement_arguments, run_and_print  # noqa: E402
from celery_overhead import side_setup, spans_per_task, start_worker, stop_side  # noqa: E402
from celery_windows import A_A, Side, add_side_arguments, compare_to_reference  # noqa: E402

WARMUP = 200
SEQUENTIAL_WARMUP = 100
POOL = 2  # the worker's ``-c``
SWITCH_MODULE = "pipetrace_bench_switch"
KIND = {"otel": "reference", "pipetrace": "pipetrace", "before": "pipetrace"}
"""What each side's switch turns: the reference's instrumentor, pipetrace's adapters; nothing (an untraced side)."""
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

PRODUCER = PRODUCER_START + r'''
import pipetrace_bench_switch as switch
pool = int(sys.argv[3])
for line in sys.stdin:
    command, _, value = line.strip().partition(" ")
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
    t0 = clock()
    r = noop.delay()
    t1 = clock()
    r.get(timeout=60)
    t2 = clock()
    print(json.dumps({"trip": t2 - t0, "publish": t1 - t0}), flush=True)
'''


@dataclass
class Window:
    trip: float  # median round trip, seconds
    publish: float  # median delay() call, seconds
    producer_cpu: float = 0.0  # µs a trip: the producer's process tree, every thread, while the trips ran
    worker_cpu: float = 0.0  # µs a trip: the worker's (main process and pool children), while the trips ran
    drained_cpu: float = 0.0  # µs a trip: both, until the receiver had the window's spans (its export included)


@dataclass
class Pair:
    """One side's two windows of a round, in the same processes."""

    off: Window
    on: Window


@dataclass
class Round:
    pairs: dict[str, Pair]
    got: dict[str, int]  # spans the receiver got in each state's window (and its drain)
    expected: dict[str, int]


def launch(mode: str, settings: Settings, receiver: SpanCounter) -> Side:
    """Start ``mode``'s worker (with the switch module) and producer; the producer runs its warm-ups."""
    home = tempfile.TemporaryDirectory()
    Path(home.name, f"{SWITCH_MODULE}.py").write_text(SWITCH)
    setup = side_setup(mode, home.name, settings.db, settings.exporters, receiver.endpoint, settings.redis_port)
    setup.env["PYTHONPATH"] = os.pathsep.join(p for p in (home.name, setup.env.get("PYTHONPATH", "")) if p)
    setup.env["PIPETRACE_BENCH_SWITCH"] = KIND.get(mode, "none")
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


def window(sides: dict[str, Side], state: str, r: int, settings: Settings, pause: float, burst: int,
           receiver: SpanCounter) -> tuple[dict[str, Window], int, int]:
    """Switch every side to ``state``, wait the gap, then cycles of ``burst`` round trips per side (a fresh order
    each cycle) until each side made ``settings.tasks``; every side's window medians, spans got and expected."""
    for mode in shuffled(list(sides), r, seed=3):
        children = _ask(sides[mode], f"switch {state}")["children"]
        if children < POOL:
            raise RuntimeError(f"{mode}: the switch reached {children} of {POOL} pool children")
    time.sleep(settings.gap)  # the switch tasks' spans and the window before exported; the same quiet time
    tasks = -(-settings.tasks // burst) * burst
    expected = sum(tasks * spans_per_task(mode, settings.exporters) for mode in sides) if state == "on" else 0
    receiver.reset()
    draw = random.Random(r * 2 + (state == "on"))
    trips: dict[str, list[float]] = {mode: [] for mode in sides}
    publishes: dict[str, list[float]] = {mode: [] for mode in sides}
    order = list(sides)
    cpu0 = {mode: _cpu(sides[mode]) for mode in sides}
    for _ in range(-(-settings.tasks // burst)):
        draw.shuffle(order)
        for mode in order:
            for _ in range(burst):
                got = _ask(sides[mode], "trip")
                trips[mode].append(got["trip"])
                publishes[mode].append(got["publish"])
            time.sleep(pause)  # what this side's worker does after the result, done before the next side's trip
    cpu1 = {mode: _cpu(sides[mode]) for mode in sides}
    receiver.wait_for(expected, 60 if expected else 0)
    cpu2 = {mode: _cpu(sides[mode]) for mode in sides}
    per_trip = 1e6 / tasks
    windows = {mode: Window(statistics.median(trips[mode]), statistics.median(publishes[mode]),
                            (cpu1[mode][0] - cpu0[mode][0]) * per_trip, (cpu1[mode][1] - cpu0[mode][1]) * per_trip,
                            (sum(cpu2[mode]) - sum(cpu0[mode])) * per_trip) for mode in sides}
    return windows, receiver.spans, expected


def _cpu(side: Side) -> tuple[float, float]:
    """CPU seconds so far of the side's producer and of its worker, each process tree whole (/proc: 10 ms ticks,
    25 µs a trip over a 400-trip window)."""
    return sum(tree_cpu(side.producer.pid)), sum(tree_cpu(side.worker.pid))


def stop(side: Side, settings: Settings) -> None:
    stop_side(side.setup, side.worker, side.producer, settings.db)
    side.home.cleanup()


def measure(args: argparse.Namespace, settings: Settings, modes: tuple[str, ...]) -> list[str]:
    """Every round's two windows, then the report; the closing-note rows."""
    rounds: list[Round] = []
    loads: list[str] = []
    with SpanCounter() as receiver:
        sides: dict[str, Side] = {}
        try:
            for r in range(args.rounds):
                if r == 0 or (args.restart_every > 0 and r % args.restart_every == 0):
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
                done, got, expected = {}, {}, {}
                for state in STATES if r % 2 == 0 else STATES[::-1]:
                    done[state], got[state], expected[state] = window(sides, state, r, settings, args.pause, args.burst,
                                                                  receiver)
                this = Round({m: Pair(done["off"][m], done["on"][m]) for m in modes}, got, expected)
                rounds.append(this)
                loads.append(load())
                print(f"  round {r + 1}: " + "; ".join(
                    f"{m} off {p.off.trip * 1e6:.0f} on {p.on.trip * 1e6:.0f}" for m, p in this.pairs.items())
                      + f" us; spans off {got['off']}/0 on {got['on']}/{expected['on']}", file=sys.stderr, flush=True)
        finally:
            for side in sides.values():
                stop(side, settings)
    return report(args, rounds, loads)


def report(args: argparse.Namespace, rounds: list[Round], loads: list[str]) -> list[str]:
    """Print the figures; return the closing-note rows."""
    modes = list(rounds[0].pairs)

    def within(mode: str, name: str) -> list[float]:
        """µs a task: the side's "on" window less its "off" window (the same processes)."""
        return [(getattr(x.pairs[mode].on, name) - getattr(x.pairs[mode].off, name)) * 1e6 for x in rounds]

    def added(mode: str, name: str, scale: float = 1e6) -> list[float]:
        """µs a task: (on less the untraced side in the same window) less (off less the untraced side)."""
        return [((getattr(x.pairs[mode].on, name) - getattr(x.pairs["untraced"].on, name))
                 - (getattr(x.pairs[mode].off, name) - getattr(x.pairs["untraced"].off, name))) * scale
                for x in rounds]

    print(f"celery on redis, prefork -c {POOL}, one task at a time, the sides taking turns {args.burst} trip(s) at a "
          f"time (pause {args.pause * 1e3:.1f} ms), tracing switched off and on in the same processes: {args.rounds} "
          f"rounds of an off and an on window of {args.window_tasks} round trips a side (started afresh every "
          f"{args.restart_every} rounds; pinned {args.pin}; one CPU {args.one_cpu}), pipetrace exporters="
          f"{args.exporters}; window medians, median (min, max) over rounds; load {load_range(loads)}")
    got_on, want_on = sum(x.got["on"] for x in rounds), sum(x.expected["on"] for x in rounds)
    print(f"  spans received: on windows {got_on}/{want_on}, off windows {sum(x.got['off'] for x in rounds)} "
          f"(0 expected)")
    for mode in modes:
        print(f"  {mode:10s} round trip off {fmt_spread([x.pairs[mode].off.trip * 1e6 for x in rounds], '.1f')} us, "
              f"on {fmt_spread([x.pairs[mode].on.trip * 1e6 for x in rounds], '.1f')} us")
        if mode == "untraced":
            continue
        print(f"    added: round trip {fmt_spread(added(mode, 'trip'), '.1f')} us, publish "
              f"{fmt_spread(added(mode, 'publish'), '.1f')} us (on less off: round trip "
              f"{fmt_spread(within(mode, 'trip'), '.1f')} us)")
        print(f"    added CPU a trip (same difference of differences; /proc ticks): producer "
              f"{fmt_spread(added(mode, 'producer_cpu', 1), '.0f')} us, worker "
              f"{fmt_spread(added(mode, 'worker_cpu', 1), '.0f')} us while the trips ran; both until the window's "
              f"spans were exported {fmt_spread(added(mode, 'drained_cpu', 1), '.0f')} us")
    floor = ""
    if A_A in modes:
        low, mid, high = spread(added(A_A, "trip"))
        ref_mid = statistics.median(added("otel", "trip"))
        floor = f"; noise floor {mid:+.0f} µs ({low:.0f}…{high:.0f})"
        print(f"noise floor ({A_A}, untraced, as the others), added round trip: {mid:.1f} us (min {low:.1f}, "
              f"max {high:.1f}) = {mid / ref_mid:+.2f} of the reference's median added")

    def beside(mode: str, name: str) -> list[float]:
        """µs a task: the "on" window less the untraced side in it (other processes: each one's own speed in it)."""
        return [(getattr(x.pairs[mode].on, name) - getattr(x.pairs["untraced"].on, name)) * 1e6 for x in rounds]

    sides = dict.fromkeys(modes)  # what compare_to_reference iterates: the sides, in order
    print("each half of the difference alone, for what it takes out:")
    compare_to_reference(sides, within, "trip", "round trip, on less off (a slow spell of one "
                         "window in it)", "", loads)
    compare_to_reference(sides, beside, "trip", "round trip, on less the untraced side in the "
                         "same window (each process's own speed in it)", "", loads)
    rows = []
    for name, label in (("trip", "round trip (wall a caller waits for)"), ("publish", "publish (producer's part)")):
        rows.append(compare_to_reference(
            sides, added, name, label,
            f"Celery added wall per task, {label}, pipetrace / reference, the sides taking turns {args.burst} "
            f"trip(s) at a time and tracing switched off and on in the same processes, real prefork worker "
            f"(`celery_toggle.py --rounds "
            f"{args.rounds} --window-tasks {args.window_tasks} --pause {args.pause} --burst {args.burst}"
            f"{' --pin' if args.pin else ''}{' --one-cpu' if args.one_cpu else ''}{' --aa' if args.aa else ''}`, "
            f"exporters {args.exporters}{floor})", loads))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--window-tasks", type=int, default=400, help="round trips per side per window")
    ap.add_argument("--pause", type=float, default=0.003,
                    help="seconds after each round trip before the next side's (what a worker does after the result)")
    ap.add_argument("--burst", type=int, default=1,
                    help="round trips a side makes in its turn, one after the other (1: every trip after other sides' "
                         "work, its caches cold; more: the trips after the first warm, and what a worker does after a "
                         "result delays its own next trip, as in a busy worker)")
    ap.add_argument("--gap", type=float, default=6.0,
                    help="seconds between a switch and the window after it, every side and state alike (longer than "
                         "the SDK's 5 s batch delay)")
    ap.add_argument("--restart-every", type=int, default=5,
                    help="start every side's worker and producer afresh every N rounds (0: never)")
    add_side_arguments(ap)
    add_placement_arguments(ap)
    run_and_print(ap, measure)


if __name__ == "__main__":
    main()
