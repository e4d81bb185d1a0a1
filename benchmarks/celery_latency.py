"""Celery wall per task on a real prefork worker, as the latency a caller waits for: one no-op task at a
time, published and its result waited for (``noop.delay().get()``), every round trip timed; the sides
(untraced, the reference, pipetrace, optionally a ``--before`` checkout) take turns in short windows, in an
order shuffled afresh each round.

Why a third Celery benchmark: the wall of ``celery_overhead.py`` / ``celery_windows.py`` is the time to get
N results of N tasks published at once, a total that a slow spell of this project's shared 2-core VMs moves
by ±1,000 µs a task (``celery_windows.py --aa``, the noise floor) against a 300–600 µs effect: it cannot
tell the sides apart. A round trip's **median** over hundreds of them is what a caller waits for, and a slow
spell moves a share of the round trips, not the median. What it measures is the wall that tracing adds on the
path of a task: the producer's publish, the worker's receipt and the pool child's run, the result's way
back; the background export runs on a core the task does not use (the worker has ``-c 2`` and one task at a
time), as in a worker with spare cores. The CPU that export costs is ``celery_overhead.py``'s and
``celery_inprocess.py``'s measure; here it is drained between windows (the receiver has every span of a
window before the next side's window starts), so no side's export runs in another's window.

What is the same as ``celery_overhead.py`` (whose pieces it reuses): the worker (``-P prefork -c 2`` on
Redis, gossip, mingle and heartbeat off) and task; **the reference** is ``opentelemetry-instrumentation-celery``
as its docs set it up (plain SDK ``TracerProvider`` + ``BatchSpanProcessor`` + OTLP/HTTP, in the pool
children from ``worker_process_init`` and in the producer at start), no pipetrace in its processes;
**pipetrace** runs as deployed (``pipetrace run --``, redaction on, ``--exporters``, default ``otlp``); both
export to one local receiver that counts what it got (completeness printed per side).

Printed per side: the window medians of the round trip and of the publish (``delay()`` alone, the producer's
part), median (min, max) over windows; added per task (paired with the untraced window of the same round);
pipetrace added / reference added as the ratio of the medians and the per-round ratios with their spread
(goal, issue 24: <= 0.5). ``--aa`` adds a second untraced side whose "added" wall is the noise floor.

What keeps one side's figure from depending on the others (each found with ``--aa``, whose two untraced
sides must come out alike; figures from this project's 2-core VM, 400-task windows):

* **The same quiet gap before every window** (``--gap``, 6 s from a window's last result, longer than the
  SDK's 5 s batch delay): the next window starts only after this side's export of its spans is done, and
  after the same quiet time whichever side ran before (a traced side's drain would otherwise give the window
  after it a quiet time an untraced side's does not).
* **Every side started afresh each round** (``--restart-every``, default 1; all at once, their warm-ups not
  measured): kept for a whole run, two untraced sides differed by 168 µs a round trip (min −239, max +10
  over 8 rounds), more than the reference adds. A process keeps whatever it got at its start for its life.
* **A fresh order each round** (:func:`_harness.shuffled`), for the windows and for the starts: started afresh
  each round but in the same rotation, the two untraced sides still differed by 143 µs (7 rounds of 8). With
  rotation each side always runs right after the same other side and starts in the same place.
  Shuffled, the A/A difference lies on both sides of zero (−24.5 µs by the median; min −428, max +460 over 20
  rounds): what is left is noise, and the per-round ratios and their confidence interval show how much.

``--pin``: every side's producer on CPU 0, its worker (main process and pool children) on CPU 1. The worker
then has one core: what a pool child does after the result is sent (``task_postrun``, ending the span) delays
the next task, so the figure counts it, as in a worker whose cores are all busy.

``--one-cpu``: every side's producer and worker, and a Redis of this run's own (a fresh ``redis-server`` on a
free loopback port, nothing saved), on CPU 0; this script, and so the receiver, on CPU 1. A round trip then
runs on one core from end to end: every cycle any process spends while it waits is on its wall — the
handlers, what a pool child does after the result (ending and batching the span), a batch thread waking in
the window (a burst over a few round trips: in the window's mean, printed with its own ratio, more than in
its median) — and a window's median no longer depends on where the scheduler put each process and the shared
Redis (unbound, two untraced sides' windows differ by hundreds of µs). It is the least favourable placement for
tracing: nothing it does can hide on an idle core. The receiver's decoding is not counted (a collector runs
elsewhere).

Judged by: the ratio of the medians of the added round trips, with a paired bootstrap interval over rounds
(:func:`_harness.added_ratio`); the goal is met only when the interval's upper end is under 0.5. The
per-round ratios are printed too, but each divides by one round's small, noisy difference.

    python benchmarks/celery_latency.py [--rounds 20] [--window-tasks 400] [--gap 6] [--restart-every 1]
                                        [--pin | --one-cpu] [--exporters otlp] [--before <checkout>] [--aa]
                                        [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (  # noqa: E402
    TABLE_HEADER,
    SpanCounter,
    fmt_spread,
    load_range,
    paired_rounds,
    shuffled,
    spread,
    tree_cpu,
)
from celery_overhead import side_setup, spans_per_task, start_worker, stop_side  # noqa: E402
from celery_windows import A_A, Side, add_side_arguments, compare_to_reference, side_modes  # noqa: E402

WARMUP = 200
SEQUENTIAL_WARMUP = 100

PRODUCER_START = r'''
import json, os, statistics, sys, time
import pipeline_app
from pipeline_app import noop
if os.environ.get("PIPETRACE_EXAMPLE_OTEL") == "reference":
    pipeline_app.setup_reference_tracing()
warm, sequential = int(sys.argv[1]), int(sys.argv[2])
for r in [noop.delay() for _ in range(warm)]:  # connections, and every pool child's first-task imports
    r.get(timeout=120)
for _ in range(sequential):  # the one-at-a-time path warm too (the result channel's subscribe)
    noop.delay().get(timeout=60)
print("ready", flush=True)
clock = time.perf_counter
'''
"""A one-at-a-time producer's start (this benchmark's and ``celery_toggle.py``'s): the reference set up, the
warm-ups run, then ``ready``; its loop over commands on stdin follows."""

PRODUCER = PRODUCER_START + r'''
for line in sys.stdin:
    n = int(line)
    publish, trip = [], []
    for _ in range(n):
        t0 = clock()
        r = noop.delay()
        t1 = clock()
        r.get(timeout=60)
        t2 = clock()
        publish.append(t1 - t0)
        trip.append(t2 - t0)
    print(json.dumps({"trip": statistics.median(trip), "publish": statistics.median(publish),
                      "mean": statistics.fmean(trip), "p90": statistics.quantiles(trip, n=10)[-1]}), flush=True)
'''


@dataclass
class Window:
    trip: float  # median round trip, seconds
    publish: float  # median delay() call, seconds
    mean: float
    p90: float
    got: int
    expected: int
    drained: float  # seconds from the last result until the receiver had every span of the window
    producer_cpu: float  # CPU seconds in the window (every thread, its export after the window included)
    main_cpu: float  # the worker's main process
    pool_cpu: float  # its pool children


@dataclass
class Settings:
    tasks: int
    exporters: str
    db: int
    gap: float
    pin: bool = False
    one_cpu: bool = False
    redis_port: int = 6379


def _on_cpu(cpu: int) -> Callable[[], None]:
    """A ``preexec_fn`` binding the process (and what it starts: a worker's pool children) to one CPU."""
    return lambda: os.sched_setaffinity(0, {cpu})


def _placement(settings: Settings) -> tuple[Callable[[], None] | None, Callable[[], None] | None]:
    """The ``preexec_fn`` of a side's (worker, producer): unbound; ``--pin``: worker CPU 1, producer CPU 0;
    ``--one-cpu``: both on CPU 0 (with the private Redis)."""
    if settings.one_cpu:
        return _on_cpu(0), _on_cpu(0)
    if settings.pin:
        return _on_cpu(1), _on_cpu(0)
    return None, None


@contextmanager
def private_redis(cpu: int) -> Iterator[int]:
    """A Redis of this run's own on a free loopback port, bound to ``cpu``, nothing saved; its port. The shared
    Redis serves others too, and its process runs on whichever core is free: neither can be held still."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = tempfile.TemporaryDirectory()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", folder.name], stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT, preexec_fn=_on_cpu(cpu))
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"private redis-server on port {port} did not start") from None
                time.sleep(0.05)
        client.close()
        yield port
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        folder.cleanup()


def launch(mode: str, settings: Settings, receiver: SpanCounter) -> Side:
    """Start ``mode``'s worker and producer; the producer runs its warm-ups (:func:`ready` waits for them)."""
    home = tempfile.TemporaryDirectory()
    setup = side_setup(mode, home.name, settings.db, settings.exporters, receiver.endpoint, settings.redis_port)
    on_worker, on_producer = _placement(settings)
    worker = start_worker(setup, on_worker)
    producer = subprocess.Popen([*setup.prefix, str(setup.bin_dir / "python"), "-c", PRODUCER, str(WARMUP),
                                 str(SEQUENTIAL_WARMUP)], cwd=setup.app_dir, env=setup.env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, preexec_fn=on_producer)
    return Side(setup, worker, producer, home)


def ready(sides: list[Side], settings: Settings, receiver: SpanCounter) -> None:
    """Wait until every side's producer has run its warm-ups and the receiver has all their spans."""
    for side in sides:
        assert side.producer.stdout is not None
        if side.producer.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{side.mode}: producer did not start; worker log:\n"
                               f"{side.setup.log.read_text()[-2000:]}")
    want = sum((WARMUP + SEQUENTIAL_WARMUP) * spans_per_task(side.mode, settings.exporters) for side in sides)
    if not receiver.wait_for(want, 60):
        print(f"  warm-up spans {receiver.spans}/{want}", file=sys.stderr)
    time.sleep(settings.gap)  # every side's last warm-up export done, as after a window


def stop(side: Side, settings: Settings) -> None:
    stop_side(side.setup, side.worker, side.producer, settings.db)
    side.home.cleanup()


def window(side: Side, settings: Settings, receiver: SpanCounter) -> Window:
    """One window: ``settings.tasks`` round trips one after the other, then every span of them drained."""
    assert side.producer.stdin is not None and side.producer.stdout is not None
    expected = settings.tasks * spans_per_task(side.mode, settings.exporters)
    receiver.reset()
    main0, pool0 = tree_cpu(side.worker.pid)
    producer0 = sum(tree_cpu(side.producer.pid))
    side.producer.stdin.write(f"{settings.tasks}\n")
    side.producer.stdin.flush()
    line = side.producer.stdout.readline()
    if not line:
        raise RuntimeError(f"{side.mode}: producer ended; worker log:\n{side.setup.log.read_text()[-2000:]}")
    got = json.loads(line)
    done = time.perf_counter()
    receiver.wait_for(expected, 60)  # the next side's window starts with this side's export done
    drained = time.perf_counter() - done
    if drained < settings.gap:  # every window starts after the same quiet time, whichever side ran before
        time.sleep(settings.gap - drained)
    main1, pool1 = tree_cpu(side.worker.pid)
    producer1 = sum(tree_cpu(side.producer.pid))
    return Window(got["trip"], got["publish"], got["mean"], got["p90"], receiver.spans, expected, drained,
                  producer1 - producer0, main1 - main0, pool1 - pool0)


def report(args: argparse.Namespace, runs: dict[str, list[Window]], loads: list[str]) -> list[str]:
    """Print the figures; return the closing-note rows."""

    def per_task(mode: str, name: str) -> list[float]:
        return [getattr(w, name) * 1e6 for w in runs[mode]]

    def added(mode: str, name: str) -> list[float]:
        """Added µs per task, paired with the untraced window of the same round."""
        return [(getattr(a, name) - getattr(u, name)) * 1e6 for a, u in zip(runs[mode], runs["untraced"],
                                                                            strict=True)]

    print(f"celery on redis, prefork -c 2, one task at a time: {args.rounds} rounds of {args.window_tasks}-task "
          f"windows per side (order shuffled each round; sides started afresh every {args.restart_every} rounds, "
          f"0: never; pinned {args.pin}; one CPU {args.one_cpu}), "
          f"pipetrace exporters={args.exporters}; window medians, median (min, "
          f"max) over windows; load {load_range(loads)}")
    for mode, ws in runs.items():
        print(f"  {mode:10s} round trip {fmt_spread(per_task(mode, 'trip'), '.1f')} us, "
              f"publish {fmt_spread(per_task(mode, 'publish'), '.1f')} us, "
              f"mean {statistics.median(per_task(mode, 'mean')):.1f}, "
              f"p90 {statistics.median(per_task(mode, 'p90')):.1f}")
        if mode == "untraced":
            continue
        got, want = sum(w.got for w in ws), sum(w.expected for w in ws)
        print(f"    added per task: round trip {fmt_spread(added(mode, 'trip'), '.1f')} us, "
              f"publish {fmt_spread(added(mode, 'publish'), '.1f')} us; spans received {got}/{want}")
        n = args.window_tasks
        cpu = {name: statistics.median((getattr(a, name) - getattr(u, name)) / n * 1e6
                                       for a, u in zip(ws, runs["untraced"], strict=True))
               for name in ("producer_cpu", "main_cpu", "pool_cpu")}
        print(f"    added CPU per task (every thread, export included), median: producer {cpu['producer_cpu']:.1f}, "
              f"worker main {cpu['main_cpu']:.1f}, pool children {cpu['pool_cpu']:.1f} us (counted in /proc's "
              f"10 ms ticks: steps of {10_000 / n:.0f} us a task; celery_overhead.py and celery_inprocess.py "
              f"measure CPU)")
    if A_A in runs:
        floor, ref = added(A_A, "trip"), added("otel", "trip")
        low, mid, high = spread(floor)
        print(f"noise floor ({A_A} against untraced, both untraced), added round trip: {mid:.1f} us "
              f"(min {low:.1f}, max {high:.1f}) = {mid / statistics.median(ref):+.2f} of the reference's median added")
    rows = []
    for name, label in (("trip", "round trip (wall a caller waits for)"),
                        ("mean", "round trip, mean of the window (its slow calls: a batch thread's bursts)"),
                        ("publish", "publish (producer's part)")):
        rows.append(compare_to_reference(
            runs, added, name, label,
            f"Celery added wall per task, {label}, pipetrace / reference, real prefork worker, one task at a time "
            f"(`celery_latency.py --rounds {args.rounds} --window-tasks {args.window_tasks} --restart-every "
            f"{args.restart_every}{' --pin' if args.pin else ''}{' --one-cpu' if args.one_cpu else ''}"
            f"{' --aa' if args.aa else ''}`, exporters {args.exporters})", loads))
    return rows


def add_placement_arguments(ap: argparse.ArgumentParser) -> None:
    """``--pin`` / ``--one-cpu``: where every side's processes run (this benchmark and ``celery_toggle.py``)."""
    ap.add_argument("--pin", action="store_true",
                    help="every side's producer on CPU 0, its worker (main process and pool children) on CPU 1")
    ap.add_argument("--one-cpu", action="store_true",
                    help="every side's producer and worker, and a private Redis of this run, on CPU 0; this "
                         "script (the receiver) on CPU 1: the whole round trip on one core, where nothing tracing "
                         "does can hide on an idle one")


def placed(ap: argparse.ArgumentParser, args: argparse.Namespace, stack: ExitStack) -> int:
    """Check the placement options; with ``--one-cpu`` move this process to CPU 1 and start the run's own Redis on
    CPU 0 (stopped when ``stack`` closes). The port of the Redis the sides use."""
    if args.pin and args.one_cpu:
        ap.error("--pin and --one-cpu are two different placements: choose one")
    if not args.one_cpu:
        return 6379
    os.sched_setaffinity(0, {1})  # the receiver (this process) off the measured core
    return stack.enter_context(private_redis(0))


def run_and_print(ap: argparse.ArgumentParser,
                  measure_with: Callable[[argparse.Namespace, Settings, tuple[str, ...]], list[str]]) -> None:
    """Parse ``ap`` (with :func:`add_placement_arguments` and ``celery_windows.add_side_arguments``), place the
    sides, run ``measure_with`` and print its closing-note rows with ``--markdown`` (this benchmark and
    ``celery_toggle.py``)."""
    args = ap.parse_args()
    modes = side_modes(args)
    with ExitStack() as stack:
        port = placed(ap, args, stack)
        settings = Settings(args.window_tasks, args.exporters, args.db, args.gap, args.pin, args.one_cpu, port)
        rows = measure_with(args, settings, modes)
    if args.markdown:
        print(TABLE_HEADER)
        print("\n".join(rows))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--window-tasks", type=int, default=400, help="round trips per side per window")
    add_side_arguments(ap)
    ap.add_argument("--gap", type=float, default=6.0,
                    help="seconds between a window's last result and the next window, every side alike (longer "
                         "than the export's 5 s batch delay)")
    add_placement_arguments(ap)
    ap.add_argument("--restart-every", type=int, default=1,
                    help="start every side's worker and producer afresh every N rounds (0: never)")
    run_and_print(ap, measure)


def measure(args: argparse.Namespace, settings: Settings, modes: tuple[str, ...]) -> list[str]:
    """Every round's windows, then the report; the closing-note rows."""

    def echo(mode: str, r: int, w: Window) -> None:
        print(f"  round {r + 1} {mode:10s} trip {w.trip * 1e6:7.1f} us publish {w.publish * 1e6:6.1f} us "
              f"p90 {w.p90 * 1e6:7.1f} us spans {w.got}/{w.expected} drained in {w.drained:.1f} s",
              file=sys.stderr, flush=True)

    with SpanCounter() as receiver:
        sides: dict[str, Side] = {}
        started = [0]  # the round the sides were last started for

        def start_all(r: int) -> None:
            """Every side started afresh, at once (their warm-ups are not measured), in a shuffled order."""
            for side in sides.values():
                stop(side, settings)
            sides.clear()
            receiver.reset()
            for mode in shuffled(modes, r, seed=7):
                sides[mode] = launch(mode, settings, receiver)
            ready(list(sides.values()), settings, receiver)

        def run(mode: str, r: int) -> Window:
            every = args.restart_every
            if every > 0 and r > 0 and r % every == 0 and started[0] != r:
                started[0] = r
                start_all(r)
            return window(sides[mode], settings, receiver)

        try:
            start_all(0)
            runs, loads = paired_rounds(modes, args.rounds, run, echo=echo, order=shuffled)
        finally:
            for side in sides.values():
                stop(side, settings)
    return report(args, runs, loads)


if __name__ == "__main__":
    main()
