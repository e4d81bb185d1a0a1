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

    python benchmarks/celery_task_instructions.py [--low 50] [--high 250] [--before <checkout>] [--jobs 2]
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


def instructions(mode: str, n: int, warm: int, receiver: SpanCounter) -> int:
    """Instructions of one task process of ``mode`` running ``warm`` then ``n`` tasks, every thread."""
    with tempfile.TemporaryDirectory() as home:
        command, app_dir, env = celery_inprocess.child_env(mode, home, receiver.endpoint)
        env["PYTHONHASHSEED"] = "0"
        grind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
        *prefix, python = command
        out = subprocess.run([*prefix, *grind, python, "-c", CHILD, mode, str(n), str(warm)], cwd=app_dir, env=env,
                             capture_output=True, text=True, timeout=3600)
    found = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or not found:
        raise RuntimeError(f"{mode} {n}: exit {out.returncode}\n{out.stderr[-3000:]}")
    return int(found.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--low", type=int, default=50)
    ap.add_argument("--high", type=int, default=250)
    ap.add_argument("--warm", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--before", type=Path, help="another checkout (with its .venvs/celery) as the mode 'before'")
    ap.add_argument("--modes", default="untraced,otel,pipetrace", help="comma list (before is added by --before)")
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
    with SpanCounter() as receiver, ThreadPoolExecutor(args.jobs) as pool:
        counts = dict(zip(runs, pool.map(lambda run: instructions(*run, args.warm, receiver), runs), strict=True))
    per_task = {m: (counts[m, args.high] - counts[m, args.low]) / (args.high - args.low) for m in modes}
    print(f"celery in one process (memory broker, fast_trace_task), instructions per task, every thread "
          f"(callgrind; ({args.high} tasks - {args.low} tasks) / {args.high - args.low}, after {args.warm} warm-up)")
    for mode in modes:
        line = (f"  {mode:10s} {per_task[mode]:>12,.0f}  (runs: {counts[mode, args.low]:,} and "
                f"{counts[mode, args.high]:,})")
        if mode != "untraced":
            line += f"  added {per_task[mode] - per_task['untraced']:>10,.0f}"
        print(line)
    if "otel" in per_task:
        ref = per_task["otel"] - per_task["untraced"]
        for mode in modes:
            if mode not in ("untraced", "otel"):
                print(f"{mode} added / reference added: {(per_task[mode] - per_task['untraced']) / ref:.3f}")


if __name__ == "__main__":
    main()
