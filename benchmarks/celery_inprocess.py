"""Celery tracing cost per task in one process, load-independent: publish and run N no-op tasks in-process
(``memory://`` broker, the task run through Celery's own ``fast_trace_task`` as a prefork child runs it),
then flush until the local receiver has every span; CPU of every thread of that process per task.

Why: ``celery_overhead.py`` measures a real prefork worker on Redis, but on a loaded machine its
added CPU is mostly the producer's and the worker main process's polling, which grows with how long
each task takes, not the tracing work itself. Here the only work besides Celery's is the
instrumentation's — signal handlers, span records, redaction, encoding, the OTLP/HTTP post — on every
thread, so an A/B of two code versions (``--before``) or of pipetrace against the reference reads in
CPU µs per task that a busy machine barely moves.

Modes, each in its own process, interleaved and rotated per round: ``untraced``; ``otel`` (the reference:
opentelemetry-instrumentation-celery + plain SDK ``BatchSpanProcessor`` + OTLP/HTTP, no pipetrace);
``pipetrace`` (``pipetrace run --``, default processing: redaction on, OTLP export); with ``--before
<checkout>`` also ``before`` (that checkout's ``.venvs/celery``). Every traced mode exports to the same
local receiver, which counts the spans (completeness printed).

``--together``: in each round every side's process runs at the same moment (started in rotated order, set
off together), instead of one after the other. CPU time per task on this project's shared 2-core VMs moves by
±20 % between runs a few seconds apart, even for the untraced side alone; run at the same moment, the sides
of a round share the machine's slow spells, and the paired per-round ratios are that much tighter. The
processes share the cores, so only CPU time is compared, not wall. Each side then exports to a receiver of its
own, so its completeness is counted on its own.

``--cpu N``: every task process, all of its threads, is bound to CPU ``N``. Unbound, a side's background
export thread runs on the other core while the task's thread works, and both threads' CPU time grows: on this
project's 2-core VMs by 60–90 µs a task on either side, 50–70 of it on the task's thread. That is the cost of two
cores handing one process's objects and GIL back and forth, not work done, and it moves from run to run. Bound,
the two threads take turns on one core, as in a worker whose cores are all busy with pool children, and the
rounds spread ±5 % instead of ±20 %.

    python benchmarks/celery_inprocess.py [--tasks 5000] [--rounds 5] [--before <checkout>] [--together]
                                          [--quiet-background] [--cpu N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (  # noqa: E402
    SpanCounter,
    fmt_spread,
    load,
    load_range,
    paired_ratios,
    paired_rounds,
    rotated,
)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHECKOUTS: dict[str, Path] = {}
EXTRA_ENV: dict[str, str] = {}
"""Set in every task process (``--quiet-background`` puts :data:`QUIET_BACKGROUND` here)."""
CPUS: set[int] = set()
"""``--cpu``: the CPU every task process (all of its threads) is bound to; empty: any."""


def _bind() -> None:
    """In a task process before it runs (``preexec_fn``): bound to :data:`CPUS` when set."""
    if CPUS:
        os.sched_setaffinity(0, CPUS)

SETUP = r'''
import json, os, sys, threading, time, uuid
import pipeline_app
from pipeline_app import app, noop
from celery.app.trace import build_tracer, fast_trace_task, setup_worker_optimizations

mode, n = sys.argv[1], int(sys.argv[2])
if mode == "otel":
    pipeline_app.setup_reference_tracing()
setup_worker_optimizations(app, "bench@host")
task = app.tasks[noop.name]  # the task itself, not the module's proxy: what a worker passes to the signals
task.__trace__ = build_tracer(task.name, task, app.loader, "bench@host", app=app)  # as the worker does
queue = app.conf.task_default_queue
conn = app.connection_for_write()
channel = conn.default_channel


def one():
    noop.delay()
    message = channel.basic_get(queue, no_ack=True)
    request = dict(message.headers, delivery_info={"exchange": "", "routing_key": queue, "priority": 0,
                                                   "redelivered": False}, reply_to=message.properties.get("reply_to"),
                   correlation_id=message.properties.get("correlation_id"), hostname="bench@host")
    fast_trace_task(request["task"], request["id"], request, message.body, message.content_type,
                    message.content_encoding)


def flush():
    from opentelemetry import trace
    provider = trace.get_tracer_provider()
    if mode in ("pipetrace", "before"):
        import pipetrace
        pipetrace.force_flush()
    elif hasattr(provider, "force_flush"):
        provider.force_flush()
'''
"""The task process's set-up: the app, ``one()`` (publish a no-op task and run it as a prefork child
does) and ``flush()``; ``celery_bytecodes.py`` runs the same."""

CHILD = SETUP + r'''

for _ in range(200):  # warm-up: imports, connections, first spans
    one()
flush()
print("ready", flush=True)


def switches():
    """(voluntary context switches of this thread, of every other thread): /proc, Linux only."""
    mine, others = 0, 0
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/status") as f:
                count = next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))
            if int(tid) == threading.get_native_id():
                mine += count
            else:
                others += count
    except (OSError, StopIteration, ValueError):
        pass
    return mine, others


if os.environ.get("BENCH_QUIET_BACKGROUND") and mode in ("pipetrace", "before"):
    try:  # a checkout with the 'later' thread (before it was removed): the one wake-up no OTEL_BSP_* sets
        import pipetrace.machinery.later as later_queue
        later_queue.WAKE_AT, later_queue.INTERVAL_S = 10**9, 3600.0
    except ImportError:
        pass
sys.stdin.readline()
times0, switches0 = os.times(), switches()
main0, cpu0 = time.thread_time(), time.process_time()
for _ in range(n):
    one()
main1 = time.thread_time()
flush()
print(json.dumps({"cpu": time.process_time() - cpu0, "main": main1 - main0}), flush=True)
sys.stdin.readline()  # the receiver has every span
cpu_drained, times1, switches1 = time.process_time() - cpu0, os.times(), switches()
print(json.dumps({"cpu_drained": cpu_drained, "user": times1.user - times0.user,
                  "sys": times1.system - times0.system, "switches_task": switches1[0] - switches0[0],
                  "switches_bg": switches1[1] - switches0[1]}), flush=True)
'''


QUIET_BACKGROUND = {"OTEL_BSP_SCHEDULE_DELAY": "3600000", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "200000",
                    "BENCH_QUIET_BACKGROUND": "1"}
"""``--quiet-background``: no batch is due before the flush, on either side (the SDK's processor and
pipetrace's queues read the same ``OTEL_BSP_*`` variables; the child sets pipetrace's record queue alike)."""


def child_env(mode: str, home: str, endpoint: str) -> tuple[list[str], Path, dict[str, str]]:
    """(command without the script, working directory, environment) of a task process of ``mode``: the
    ``python`` of its checkout, under ``pipetrace run --`` when traced by pipetrace, exporting to ``endpoint``."""
    checkout = CHECKOUTS.get(mode)
    bin_dir = checkout / ".venvs" / "celery" / "bin" if checkout is not None else BIN
    env = dict(os.environ, PIPETRACE_HOME=home, PIPETRACE_EXAMPLE_BROKER="memory://",
               PIPETRACE_EXAMPLE_BACKEND="cache+memory://", PIPETRACE_EXAMPLE_QUEUE="bench",
               PIPETRACE_EXPORTERS="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
               # a loop of no-op tasks in one process ends spans faster than any worker: with the SDK's
               # 2,048-span queue the reference drops spans (less export work: it would be flattered);
               # both sides keep every span (pipetrace's OTLP queue reads the same variable)
               OTEL_BSP_MAX_QUEUE_SIZE="200000",
               PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    for name in ("PIPETRACE_AUTO", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "PIPETRACE_EXAMPLE_OTEL",
                 *QUIET_BACKGROUND):
        env.pop(name, None)
    env.update(EXTRA_ENV)
    if mode == "otel":
        env["PIPETRACE_EXAMPLE_OTEL"] = "reference"
    if checkout is not None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # another checkout is only read
    prefix = [str(bin_dir / "pipetrace"), "run", "--"] if mode in ("pipetrace", "before") else []
    return [*prefix, str(bin_dir / "python")], (checkout or ROOT) / "example_dags" / "celery", env


def run(mode: str, n: int, receiver: SpanCounter) -> dict[str, float]:
    receiver.reset()
    with tempfile.TemporaryDirectory() as home:
        command, app_dir, env = child_env(mode, home, receiver.endpoint)
        proc = subprocess.Popen([*command, "-c", CHILD, mode, str(n)], cwd=app_dir, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=_bind)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{mode}: the task process did not start")
            expected = 0 if mode == "untraced" else 200 * 2 + n * 2
            receiver.wait_for(200 * 2 if expected else 0, 30)
            base = receiver.spans
            proc.stdin.write("go\n")
            proc.stdin.flush()
            out = json.loads(proc.stdout.readline())
            receiver.wait_for(expected, 60)
            proc.stdin.write("report\n")
            proc.stdin.flush()
            out.update(json.loads(proc.stdout.readline()))
            out["got"], out["expected"] = receiver.spans - base, expected - 400 if expected else 0
            proc.wait(60)
            return out
        finally:
            if proc.poll() is None:
                proc.kill()


def run_together(modes: Sequence[str], n: int, receivers: Mapping[str, SpanCounter]) -> dict[str, dict[str, float]]:
    """``--together``: one process per mode (started in the order given), all set off at the same moment, so a
    slow spell of the shared machine lands on every side of the round alike (CPU time, not wall, is compared:
    the processes share the cores). Each side exports to a receiver of its own, so its completeness is its own."""
    with tempfile.TemporaryDirectory() as home:
        procs: dict[str, subprocess.Popen[str]] = {}
        try:
            for mode in modes:
                receivers[mode].reset()
                (Path(home) / mode).mkdir()
                command, app_dir, env = child_env(mode, str(Path(home) / mode), receivers[mode].endpoint)
                procs[mode] = subprocess.Popen([*command, "-c", CHILD, mode, str(n)], cwd=app_dir, env=env,
                                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                               preexec_fn=_bind)
            expected = {mode: 0 if mode == "untraced" else n * 2 for mode in modes}
            base: dict[str, int] = {}
            for mode, proc in procs.items():
                assert proc.stdout is not None
                if proc.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"{mode}: the task process did not start")
                receivers[mode].wait_for(200 * 2 if expected[mode] else 0, 30)
                base[mode] = receivers[mode].spans
            for proc in procs.values():
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            outs: dict[str, dict[str, float]] = {}
            for mode, proc in procs.items():
                assert proc.stdout is not None
                outs[mode] = json.loads(proc.stdout.readline())
            for mode, proc in procs.items():
                receivers[mode].wait_for(base[mode] + expected[mode], 120)
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write("report\n")
                proc.stdin.flush()
                outs[mode].update(json.loads(proc.stdout.readline()))
                outs[mode]["got"], outs[mode]["expected"] = receivers[mode].spans - base[mode], expected[mode]
            for proc in procs.values():
                proc.wait(60)
            return outs
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--before", type=Path, help="another checkout (with its .venvs/celery) as the mode 'before'")
    ap.add_argument("--quiet-background", action="store_true",
                    help="a diagnosis, not the goal's set-up: no side's background thread is woken before the flush")
    ap.add_argument("--together", action="store_true",
                    help="run every side's process at the same time in each round (start order rotated)")
    ap.add_argument("--cpu", type=int,
                    help="bind every task process, all its threads, to this one CPU (as on a worker whose cores are "
                         "all busy)")
    args = ap.parse_args()
    if args.cpu is not None:
        CPUS.add(args.cpu)
    if args.quiet_background:
        EXTRA_ENV.update(QUIET_BACKGROUND)
    modes: tuple[str, ...] = ("untraced", "otel", "pipetrace")
    if args.before is not None:
        CHECKOUTS["before"] = args.before.resolve()
        modes = (*modes, "before")
    n = args.tasks
    if args.together:
        runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
        loads: list[str] = []
        with contextlib.ExitStack() as stack:
            receivers = {mode: stack.enter_context(SpanCounter()) for mode in modes}
            for r in range(args.rounds):
                outs = run_together(rotated(modes, r), n, receivers)
                for mode in modes:
                    runs[mode].append(outs[mode])
                loads.append(load())
    else:
        with SpanCounter() as receiver:
            runs, loads = paired_rounds(modes, args.rounds, lambda mode, _r: run(mode, n, receiver))
    quiet = "; background threads kept asleep until the flush (--quiet-background)" if args.quiet_background else ""
    if args.cpu is not None:
        quiet += f"; every task process bound to CPU {args.cpu} (--cpu)"
    how = ("rounds, every side's process at the same time (--together)" if args.together
           else "interleaved rounds")
    print(f"celery in one process (memory broker, fast_trace_task), {n} no-op tasks, {args.rounds} {how}; "
          f"CPU µs per task, median (min, max); load {load_range(loads)}{quiet}")

    def added(mode: str, field: str) -> list[float]:
        return [(a[field] - u[field]) / n * 1e6 for a, u in zip(runs[mode], runs["untraced"], strict=True)]

    for mode in modes:
        rs = runs[mode]
        line = (f"  {mode:10s} cpu {fmt_spread([r['cpu_drained'] / n * 1e6 for r in rs], '.1f')}, "
                f"task thread {fmt_spread([r['main'] / n * 1e6 for r in rs], '.1f')}")
        if mode != "untraced":
            line += (f"; added: all threads {fmt_spread(added(mode, 'cpu_drained'), '.1f')}, task thread "
                     f"{fmt_spread(added(mode, 'main'), '.1f')}; spans {sum(r['got'] for r in rs)}/"
                     f"{sum(r['expected'] for r in rs)}")
        print(line)
        print(f"  {'':10s} of which kernel {fmt_spread([r['sys'] / n * 1e6 for r in rs], '.1f')}; voluntary "
              f"context switches per task: task thread {fmt_spread([r['switches_task'] / n for r in rs])}, "
              f"background threads {fmt_spread([r['switches_bg'] / n for r in rs])}")
    for field, what in (("cpu_drained", "all threads"),
                        ("main", "task thread: the part a task's caller waits for, export threads left out")):
        ref = added("otel", field)
        for mode in modes[2:]:
            ratios = paired_ratios(added(mode, field), ref)
            ours = statistics.median(added(mode, field))
            print(f"{mode} added / reference added ({what}): {ours / statistics.median(ref):.2f} "
                  f"(ratio of medians); per round {fmt_spread(ratios)}")


if __name__ == "__main__":
    main()
