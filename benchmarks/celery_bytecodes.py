"""Celery tracing work per task in Python bytecodes: deterministic, so two code versions compare exactly on a
shared machine where CPU timings are noise.

The task process of ``celery_inprocess.py`` (``memory://`` broker, each no-op task published and run through
Celery's own ``fast_trace_task``, ``pipetrace run --``, OTLP to a local receiver) runs under ``sys.settrace``
with opcode events, and counts the bytecodes executed per task in each place pipetrace works:

* ``before_publish`` / ``after_publish`` / ``prerun`` / ``postrun``: the signal handlers and everything they
  call, on the task's thread (the handler functions are looked up by name in the checkout being measured);
* ``later``: in a checkout that has it (before this stop's), the ``pipetrace-later`` thread and its drain (the
  task span built after it ends; the task span is now built in ``postrun``);
* ``export``: the ``pipetrace-export-*`` threads (redaction, encoding, the OTLP post; per batch, so it moves a
  little with how the spans fell into batches).

Bytecodes are not time (C code, allocation and cache misses are not in them), so pair them with
``celery_inprocess.py``'s CPU figures; they show which side of a change does more Python work, and where.

``--time`` times each signal send instead (thread CPU per call, no tracing; warm: the tasks run back to back).

    python benchmarks/celery_bytecodes.py [--tasks 500] [--rounds 2] [--time] [--detail N] --before <checkout>
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import celery_inprocess  # noqa: E402
from _harness import SpanCounter, fmt_spread, load_range, paired_rounds  # noqa: E402

COUNT = r'''
import collections
from pipetrace.integrations.celery import publish as _publish, worker as _worker

ROOTS = {_publish.before_publish.__code__: "before_publish", _publish.after_publish.__code__: "after_publish",
         _worker.task_prerun.__code__: "prerun", _worker.task_postrun.__code__: "postrun"}
try:  # (a checkout before the later thread was removed)
    from pipetrace.machinery import later as _later
    ROOTS[_later.drain.__code__] = "later"
except ImportError:
    pass
THREADS = (("pipetrace-later", "later"), ("pipetrace-export", "export"))
counting = [False]
per_thread = []
state = threading.local()


def _opcodes(bucket, root):
    counts = getattr(state, "counts", None)
    if counts is None:
        counts = state.counts = collections.Counter()
        per_thread.append(counts)

    def local(frame, event, arg):
        if event == "opcode":
            if counting[0]:
                counts[bucket] += 1
                if DETAIL:
                    code = frame.f_code
                    counts[f"{bucket} {code.co_filename.rsplit('/', 2)[-1]}:{code.co_name}"] += 1
        elif event == "return" and frame is root:
            state.bucket = None
        return local
    return local


def tracer(frame, event, arg):
    bucket = getattr(state, "bucket", None)
    root = None
    if bucket is None:
        thread = threading.current_thread().name
        bucket = next((b for prefix, b in THREADS if thread.startswith(prefix)), None)
        if bucket is None:
            bucket = ROOTS.get(frame.f_code)
            if bucket is None:
                return None
            state.bucket, root = bucket, frame
            if counting[0]:
                calls[bucket] += 1
    frame.f_trace_opcodes = True
    return _opcodes(bucket, root)


calls = collections.Counter()
DETAIL = bool(os.environ.get("BYTECODES_DETAIL"))
threading.settrace(tracer)
sys.settrace(tracer)
for _ in range(200):
    one()
flush()
counting[0] = True
for _ in range(n):
    one()
flush()
counting[0] = False
total = collections.Counter()
for counts in per_thread:
    total.update(counts)
print(json.dumps({"opcodes": {k: v / n for k, v in total.items()}, "calls": {k: v / n for k, v in calls.items()}}),
      flush=True)
'''

TIME = r'''
import statistics
from celery.utils.dispatch import signal as _dispatch

_send, _clock, took = _dispatch.Signal.send, time.thread_time_ns, {}


def _timed_send(self, sender, **named):
    start = _clock()
    try:
        return _send(self, sender, **named)
    finally:
        took.setdefault(self.name, []).append(_clock() - start)


_dispatch.Signal.send = _timed_send
import celery.app.trace as _trace  # noqa: E402  (it binds these sends at import)
from celery import signals as _signals  # noqa: E402
_trace.send_prerun, _trace.send_postrun = _signals.task_prerun.send, _signals.task_postrun.send
for _ in range(200):
    one()
flush()
took.clear()
for _ in range(n):
    one()
flush()
print(json.dumps({"opcodes": {}, "calls": {}, "thread_us": {k: statistics.median(v) / 1e3 for k, v in took.items()}}),
      flush=True)
'''
"""``--time``: thread CPU per signal send (every handler on it), median over the calls, no tracing."""


def run(mode: str, n: int, receiver: SpanCounter, child: str = COUNT) -> dict[str, dict[str, float]]:
    receiver.reset()
    with tempfile.TemporaryDirectory() as home:
        command, app_dir, env = celery_inprocess.child_env(mode, home, receiver.endpoint)
        out = subprocess.run([*command, "-c", celery_inprocess.SETUP + child, mode, str(n)], cwd=app_dir, env=env,
                             capture_output=True, text=True, timeout=600, check=True)
        result: dict[str, dict[str, float]] = json.loads(out.stdout.strip().splitlines()[-1])
        return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--before", type=Path, required=True, help="another checkout (with its .venvs/celery)")
    ap.add_argument("--time", action="store_true", help="thread CPU per signal instead of bytecodes")
    ap.add_argument("--detail", type=int, default=0, metavar="N",
                    help="also the N functions that run the most bytecodes in each handler (their own, per task)")
    args = ap.parse_args()
    if args.detail:
        os.environ["BYTECODES_DETAIL"] = "1"  # (read by the task process: per-function counts too)
    celery_inprocess.CHECKOUTS["before"] = args.before.resolve()
    modes = ("before", "pipetrace")
    with SpanCounter() as receiver:
        runs, loads = paired_rounds(modes, args.rounds,
                                    lambda mode, _r: run(mode, args.tasks, receiver, TIME if args.time else COUNT))
    if args.time:
        print(f"celery signal sends, thread CPU µs per call ({args.tasks} no-op tasks in one process, {args.rounds} "
              f"interleaved rounds, load {load_range(loads)}), median of the rounds' medians (min, max)")
        for signal in ("before_task_publish", "after_task_publish", "task_prerun", "task_postrun"):
            print(f"  {signal:20s} " + "; ".join(
                f"{mode} {fmt_spread([r['thread_us'].get(signal, 0.0) for r in runs[mode]], '.1f')}" for mode in modes))
        return
    buckets = ("before_publish", "after_publish", "prerun", "postrun", "later", "export")
    print(f"celery bytecodes per task ({args.tasks} no-op tasks in one process, {args.rounds} interleaved rounds), "
          "median (min, max); calls per task in brackets")
    for bucket in (*buckets, "total"):
        cells = []
        for mode in modes:
            values = [sum(v for k, v in r["opcodes"].items() if k in buckets) if bucket == "total"
                      else r["opcodes"].get(bucket, 0.0) for r in runs[mode]]
            called = statistics.median(r["calls"].get(bucket, 0.0) for r in runs[mode])
            cells.append(f"{mode} {fmt_spread(values, '.0f')}" + (f" [{called:.2f}]" if called else ""))
        print(f"  {bucket:15s} " + "; ".join(cells))
    for bucket in buckets[:4] if args.detail else ():
        for mode in modes:
            own = {k.split(" ", 1)[1]: statistics.median(r["opcodes"].get(k, 0.0) for r in runs[mode])
                   for k in runs[mode][0]["opcodes"] if k.startswith(f"{bucket} ")}
            top = sorted(own.items(), key=lambda kv: -kv[1])[: args.detail]
            print(f"  {bucket} ({mode}), the functions running the most of its bytecodes (their own, per task): "
                  + ", ".join(f"{name} {count:.0f}" for name, count in top))


if __name__ == "__main__":
    main()
