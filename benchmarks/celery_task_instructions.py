"""Machine instructions per Celery task added by tracing, every thread included, counted by callgrind: the
goal ratio of issue 24 (pipetrace's added cost ≤ ½ the reference's) in a measure that does not move with load.

Why: ``celery_inprocess.py`` measures the same in CPU µs, which this shared 2-core machine moves by ±20 % and
more; bytecodes (``celery_bytecodes.py``) miss C work and the reference's, which is mostly C-free Python in
other libraries anyway. Instructions count both sides alike and are repeatable to ~1 %.

How: the task process of ``celery_inprocess.py`` (its ``SETUP``: ``memory://`` broker, each no-op task
published and run through Celery's ``fast_trace_task``, exported over OTLP/HTTP to a local receiver) runs
under ``valgrind --tool=callgrind`` twice per mode: ``--warm`` tasks, a flush, then ``--low`` or ``--high``
tasks and a flush (every span exported and received). Per task = (high run - low run) / (high - low): the
start-up, imports and warm-up cancel out, every thread's work on the extra tasks stays in. Modes as in
``celery_inprocess.py``: ``untraced``; ``otel`` (the reference, set up exactly as there:
opentelemetry-instrumentation-celery + plain SDK ``BatchSpanProcessor`` + OTLP/HTTP); ``pipetrace``
(``pipetrace run --``, default processing: redaction on, OTLP export); ``before`` with ``--before
<checkout>`` (that checkout's ``.venvs/celery``). Added = mode - untraced. Each run takes a minute or two;
``--jobs`` runs that many at once (counts do not depend on it). Needs ``valgrind`` (Debian package
``valgrind``). Background threads that wake on a timer (the batch processors) do a little work per wall
second, which callgrind stretches: that part is noise of ~1 % of the added figure. The modes ``pipetrace`` and
``untraced`` run this checkout's code as it is when each run starts: do not edit it while a run is going.
Callgrind sees C functions only, so this gives the whole; ``celery_bytecodes.py`` says in which Python code.

``--path critical``: only the work inside the handlers a caller of ``delay().get()`` waits for
(:data:`CRITICAL`: the publish's two, and ``task_prerun``, which the task body waits for), the wall's share of
the work; ``--path <signal,...>``: named signals' handlers alone. Each of those signal sends is called through
``operator.call`` (set before the app is made: :data:`THROUGH_CALL`) and callgrind counts only inside it
(``--toggle-collect=_operator_call``). ``--cache-sim``: callgrind's simulated caches and branch predictor too,
and kcachegrind's cycle estimate from them (:func:`estimated_cycles`), which sees the code and data a path
touches; ``--last-level BYTES`` simulates a smaller last-level cache (one shared with other processes).

    python benchmarks/celery_task_instructions.py [--low 50] [--high 250] [--before <checkout>] [--jobs 2]
                                                  [--path all|critical|<signals>] [--cache-sim] [--last-level BYTES]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import celery_inprocess  # noqa: E402
from _harness import SpanCounter  # noqa: E402

CHILD = celery_inprocess.SETUP + r'''
warm = int(sys.argv[3])
for _ in range(warm):
    one()
flush()
for _ in range(n):
    one()
flush()
'''

CRITICAL = ("before_task_publish", "after_task_publish", "task_prerun")
"""The signals whose handlers a caller of ``task.delay().get()`` waits for: the publish (``delay()`` returns
after ``after_task_publish``) and the pool child's ``task_prerun`` (the task body starts after it).
``task_postrun`` runs after the result is sent."""

THROUGH_CALL = r'''
import operator as _operator
import celery.app.trace as _trace
from celery import signals as _signals


def _through(send):
    """``send`` called through ``operator.call``: callgrind counts only inside it (``--toggle-collect``)."""
    call = _operator.call
    return lambda *args, **kwargs: call(send, *args, **kwargs)


for _name in SIGNALS:
    _signal = getattr(_signals, _name)
    _signal.send = _through(_signal.send)  # read by Celery's task sender when the app first publishes
_trace.send_prerun = _signals.task_prerun.send  # (the tracer reads these module globals at each task)
_trace.send_postrun = _signals.task_postrun.send
'''
"""Set before the task process's set-up when only some signals' handlers are counted (``--path``)."""

EVENTS_CACHE = ("--cache-sim=yes", "--branch-sim=yes")


def counts(mode: str, n: int, warm: int, receiver: SpanCounter, *, cache: bool = False,
           signals: tuple[str, ...] = (), last_level: int | None = None) -> dict[str, int]:
    """Callgrind's totals (``Ir``, and with ``cache`` the simulated cache misses and mispredicted branches) of
    one task process of ``mode`` running ``warm`` then ``n`` tasks: every thread, or only inside the sends
    of ``signals`` when given (:data:`CRITICAL`: the handlers a caller waits for). ``last_level``: the simulated
    last-level cache's size in bytes (8-way, 64-byte lines) instead of this machine's."""
    with tempfile.TemporaryDirectory() as home:
        command, app_dir, env = celery_inprocess.child_env(mode, home, receiver.endpoint)
        env["PYTHONHASHSEED"] = "0"
        grind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
        if cache:
            grind += EVENTS_CACHE
            if last_level is not None:
                grind.append(f"--LL={last_level},8,64")
        child = CHILD
        if signals:
            grind.append("--toggle-collect=_operator_call")
            child = f"SIGNALS = {signals!r}\n" + THROUGH_CALL + CHILD
        *prefix, python = command
        out = subprocess.run([*prefix, *grind, python, "-c", child, mode, str(n), str(warm)], cwd=app_dir, env=env,
                             capture_output=True, text=True, timeout=3600)
    events = re.search(r"Events\s*: ([\w ]+)", out.stderr)
    found = re.search(r"Collected : ([\d ]+)", out.stderr)
    if out.returncode != 0 or not found or not events:
        raise RuntimeError(f"{mode} {n}: exit {out.returncode}\n{out.stderr[-3000:]}")
    names, values = events.group(1).split(), [int(v) for v in found.group(1).split()]
    return dict(zip(names, values + [0] * (len(names) - len(values)), strict=True))  # (trailing zeros left out)


def estimated_cycles(c: dict[str, float]) -> float:
    """Cachegrind's rough cost model (kcachegrind's "cycle estimation"): an instruction a cycle, 10 for an L1
    miss or a mispredicted branch, 100 for a last-level miss."""
    l1 = c.get("I1mr", 0) + c.get("D1mr", 0) + c.get("D1mw", 0)
    ll = c.get("ILmr", 0) + c.get("DLmr", 0) + c.get("DLmw", 0)
    return c["Ir"] + 10 * (l1 + c.get("Bcm", 0) + c.get("Bim", 0)) + 100 * ll


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--low", type=int, default=50)
    ap.add_argument("--high", type=int, default=250)
    ap.add_argument("--warm", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--before", type=Path, help="another checkout (with its .venvs/celery) as the mode 'before'")
    ap.add_argument("--modes", default="untraced,otel,pipetrace", help="comma list (before is added by --before)")
    ap.add_argument("--cache-sim", action="store_true",
                    help="also simulate the caches and branch predictor: misses and an estimate in cycles")
    ap.add_argument("--path", default="all",
                    help="all: every thread; critical: only inside the handlers a caller waits for "
                         "(before_task_publish, after_task_publish, task_prerun); or a comma list of Celery "
                         "signals whose handlers alone are counted")
    ap.add_argument("--last-level", type=int, metavar="BYTES",
                    help="with --cache-sim: the simulated last-level cache's size (a power of two, at least 512 "
                         "bytes; 8-way, 64-byte lines) instead of this machine's: a smaller one stands for a cache "
                         "shared with other processes (the broker, the worker's main process, other tenants)")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install -y valgrind)")
    modes = args.modes.split(",")
    if args.before is not None:
        celery_inprocess.CHECKOUTS["before"] = args.before.resolve()
        modes.append("before")
    if "untraced" not in modes:
        modes.insert(0, "untraced")
    runs = [(mode, n) for mode in modes for n in (args.low, args.high)]
    signals = () if args.path == "all" else CRITICAL if args.path == "critical" else tuple(args.path.split(","))
    with SpanCounter() as receiver, ThreadPoolExecutor(args.jobs) as pool:
        def one(run: tuple[str, int]) -> dict[str, int]:
            return counts(run[0], run[1], args.warm, receiver, cache=args.cache_sim, signals=signals,
                          last_level=args.last_level)

        got = dict(zip(runs, pool.map(one, runs), strict=True))
    extra = args.high - args.low
    per_task = {m: {e: (got[m, args.high][e] - got[m, args.low][e]) / extra for e in got[m, args.high]}
                for m in modes}
    where = f"only inside the handlers of {', '.join(signals)}" if signals else "every thread"
    print(f"celery in one process (memory broker, fast_trace_task), per task, {where} (callgrind; "
          f"({args.high} tasks - {args.low} tasks) / {extra}, after {args.warm} warm-up)")
    for mode in modes:
        ir = per_task[mode]["Ir"]
        line = (f"  {mode:10s} instructions {ir:>12,.0f}  (runs: {got[mode, args.low]['Ir']:,} and "
                f"{got[mode, args.high]['Ir']:,})")
        if mode != "untraced":
            line += f"  added {ir - per_task['untraced']['Ir']:>10,.0f}"
        print(line)
        if args.cache_sim:
            c = per_task[mode]
            print(f"  {'':10s} L1 misses {c['I1mr'] + c['D1mr'] + c['D1mw']:,.0f} (instruction {c['I1mr']:,.0f}), "
                  f"last-level misses {c['ILmr'] + c['DLmr'] + c['DLmw']:,.0f}, mispredicted branches "
                  f"{c['Bcm'] + c['Bim']:,.0f}; estimated cycles {estimated_cycles(c):,.0f}")
    if "otel" in per_task:
        measures = [("instructions", lambda c: c["Ir"])]
        if args.cache_sim:
            measures.append(("estimated cycles", estimated_cycles))
        for label, measure in measures:
            base = measure(per_task["untraced"])
            ref = measure(per_task["otel"]) - base
            for mode in modes:
                if mode not in ("untraced", "otel"):
                    print(f"{mode} added / reference added, {label}: {(measure(per_task[mode]) - base) / ref:.3f}")


if __name__ == "__main__":
    main()
