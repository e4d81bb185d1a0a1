"""Celery overhead: N no-op tasks through a real prefork worker (concurrency 2) on Redis, side by side
in one run: untraced, opentelemetry-instrumentation-celery (the reference), pipetrace (``pipetrace run --``).

Both traced modes use pipetrace's tracer provider with the same exporters (``--exporters``, default
``none``: spans are made and processed but not written, which isolates the instrumentation cost from
the exporter's; ``store`` adds the SQLite writes each worker child does in its background thread).
Each round runs the three modes one after the other, in a rotating order, and each figure is the
median over the rounds, so a noisy moment of the shared machine hits every mode alike.

Two figures per mode, both over the window from the first publish to the last result:
* wall time: the added time per task is (mode - untraced) / N — the throughput the user sees;
* CPU time of the producer plus the whole worker (main process and pool children, read from /proc):
  the work tracing adds, much less sensitive to scheduling noise on a 2-core machine.
Goal (issue 4): pipetrace's added time per task <= half of the reference's.

``--hooks`` adds ``--hook-rounds`` more runs per traced mode, interleaved, that time the
instrumentation's own work where it runs: each Celery signal that carries its handlers
(``before/after_task_publish`` in the producer, ``task_prerun/postrun`` in the pool children), as thread
CPU time per call, medians over the calls after the warm-up, plus the CPU time of every other thread of
those processes per task after the warm-up ("bg": work an instrumentation hands to a background thread,
such as pipetrace's task spans made after the task, is counted, not hidden). These runs are not part of
the figures above (the timing shim costs a little itself). Untraced, Celery sends none of these signals,
so the figures are the added time per task; they are the steadiest measure of it here (the throughput
figures move by more than the whole difference between the modes from one round to the next).

    python benchmarks/celery_overhead.py [--tasks 2000] [--rounds 3] [--db 14] [--exporters none|store]
                                         [--hooks] [--hook-rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP_DIR = ROOT / "example_dags" / "celery"
BIN = Path(sys.executable).parent
MODES = ("untraced", "otel", "pipetrace")
TICK = os.sysconf("SC_CLK_TCK")

PRODUCER = r'''
import json, sys, time
from pipeline_app import noop
n = int(sys.argv[1])
# warm-up outside the window: connections, and every pool child's first-task imports (without .pyc
# files, as with PYTHONDONTWRITEBYTECODE, each child compiles what it imports lazily)
for r in [noop.delay() for _ in range(200)]:
    r.get(timeout=120)
print("ready", flush=True)
sys.stdin.readline()
t0, c0 = time.perf_counter(), time.process_time()
results = [noop.delay() for _ in range(n)]
for r in results:
    r.get(timeout=300)
print(json.dumps({"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0}), flush=True)
'''


HOOK_SHIM = r'''
"""Times each Celery signal send (thread CPU ns) and writes medians per signal for this process, plus
the CPU time of the process's other threads (an instrumentation's background work) per task."""
import json, os, statistics, threading, time


def _other_threads_ns():
    total, main = 0, threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main and thread.ident is not None:
            try:
                total += time.clock_gettime_ns(time.pthread_getcpuclockid(thread.ident))
            except (OSError, AttributeError):
                pass
    return total


def _shim():
    from celery.utils.dispatch import signal as dispatch

    send, clock, out = dispatch.Signal.send, time.thread_time_ns, os.environ["PIPETRACE_BENCH_HOOKS"]
    calls, base = {}, {}

    def timed_send(self, sender, **named):
        start = clock()
        try:
            return send(self, sender, **named)
        finally:
            took = clock() - start
            name = self.name
            seen = calls.setdefault(name, [])
            seen.append(took)
            if name in ("task_postrun", "after_task_publish"):
                if len(seen) == SKIP:
                    base[name] = _other_threads_ns()
                elif len(seen) % 250 == 0:
                    rows = {k: [statistics.median(v[SKIP:]), len(v) - SKIP] for k, v in calls.items()
                            if len(v) > SKIP}
                    if name in base:  # other threads' CPU per call since the warm-up (mean, not median)
                        rows[f"background {name}"] = [(_other_threads_ns() - base[name]) / (len(seen) - SKIP),
                                                      len(seen) - SKIP]
                    with open(os.path.join(out, f"{os.getpid()}.json"), "w") as fh:
                        json.dump(rows, fh)

    dispatch.Signal.send = timed_send


SKIP = int(os.environ.get("PIPETRACE_BENCH_HOOKS_SKIP", "100"))  # each process's warm-up calls
if os.environ.get("PIPETRACE_BENCH_HOOKS"):
    _shim()
'''
HOOKS = ("before_task_publish", "after_task_publish", "task_prerun", "task_postrun")
BACKGROUND = ("background after_task_publish", "background task_postrun")


def _tree_cpu(pid: int) -> tuple[float, float]:
    """User + system CPU seconds of ``pid`` itself (the worker's main process) and of its live
    descendants (the prefork pool)."""
    main = pool = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            seconds = (int(fields[11]) + int(fields[12])) / TICK
            if p == pid:
                main += seconds
            else:
                pool += seconds
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(c) for c in children)
        except (OSError, ValueError, IndexError):
            continue
    return main, pool


def run(mode: str, n: int, db: int, exporters: str, hooks: Path | None = None) -> tuple[float, float, float, float]:
    """(wall seconds, producer CPU, worker main-process CPU, pool CPU seconds) for n tasks in ``mode``;
    with ``hooks`` (a folder), the timing shim runs in every process and writes there."""
    with tempfile.TemporaryDirectory() as home:
        queue = f"bench-{uuid.uuid4().hex[:6]}"
        env = dict(os.environ, PIPETRACE_HOME=home, PIPETRACE_EXAMPLE_QUEUE=queue,
                   PIPETRACE_EXAMPLE_BROKER=f"redis://127.0.0.1:6379/{db}",
                   PIPETRACE_EXAMPLE_BACKEND=f"redis://127.0.0.1:6379/{db + 1}",
                   PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", PIPETRACE_EXPORTERS=exporters)
        env.pop("PIPETRACE_AUTO", None)
        if hooks is not None:
            (hooks / "sitecustomize.py").write_text(HOOK_SHIM)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(hooks), env.get("PYTHONPATH", "")) if p)
            env["PIPETRACE_BENCH_HOOKS"] = str(hooks / "out")
            (hooks / "out").mkdir(exist_ok=True)
        if mode == "otel":
            env["PIPETRACE_EXAMPLE_OTEL"] = "1"
        prefix = [str(BIN / "pipetrace"), "run", "--"] if mode == "pipetrace" else []
        log = Path(home) / "worker.log"
        with open(log, "wb") as fh:
            worker = subprocess.Popen(
                [*prefix, str(BIN / "celery"), "-A", "pipeline_app", "worker", "-P", "prefork", "-c", "2", "-Q",
                 queue, "-n", f"{queue}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "-l", "warning"], cwd=APP_DIR, env=env, stdout=fh, stderr=subprocess.STDOUT,
                start_new_session=True)
        producer = None
        try:
            producer = subprocess.Popen([*prefix, str(BIN / "python"), "-c", PRODUCER, str(n)], cwd=APP_DIR, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert producer.stdin is not None and producer.stdout is not None
            if producer.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{mode}: producer did not start; worker log:\n{log.read_text()[-2000:]}")
            time.sleep(1.0)  # let the pool children finish their start-up work
            cpu0 = _tree_cpu(worker.pid)
            producer.stdin.write("go\n")
            producer.stdin.flush()
            line = producer.stdout.readline()
            cpu1 = _tree_cpu(worker.pid)
            out = json.loads(line)
            producer.wait(60)
            return float(out["seconds"]), float(out["cpu"]), cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
        finally:
            if producer is not None and producer.poll() is None:
                producer.kill()
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)


def hook_times(mode: str, n: int, db: int, exporters: str) -> dict[str, float]:
    """Median thread CPU µs per call of each traced signal in ``mode``, and the mean CPU µs per call of
    the process's other threads (pool children averaged)."""
    with tempfile.TemporaryDirectory() as folder:
        run(mode, n, db, exporters, hooks=Path(folder))
        found: dict[str, list[float]] = {}
        for path in (Path(folder) / "out").glob("*.json"):
            for name, (median_ns, _count) in json.loads(path.read_text()).items():
                found.setdefault(name, []).append(median_ns / 1000)
    return {name: statistics.fmean(found[name]) if name in found else 0.0 for name in (*HOOKS, *BACKGROUND)}


def _sides(t: dict[str, float]) -> tuple[float, float]:
    """(publish, task) µs: the signal handlers plus the background threads' share of each side."""
    return (t["before_task_publish"] + t["after_task_publish"] + t[BACKGROUND[0]],
            t["task_prerun"] + t["task_postrun"] + t[BACKGROUND[1]])


def report_hooks(n: int, db: int, exporters: str, rounds: int) -> None:
    runs: dict[str, list[dict[str, float]]] = {"otel": [], "pipetrace": []}
    for i in range(rounds):  # interleaved, alternating which mode goes first
        for mode in (("otel", "pipetrace") if i % 2 == 0 else ("pipetrace", "otel")):
            runs[mode].append(hook_times(mode, n, db, exporters))
    print(f"instrumentation hooks, thread CPU per call (median over calls; pool children averaged), plus the "
          f"other threads' CPU per task ('bg'), us; median of {rounds} interleaved runs:")
    times = {mode: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for mode, rs in runs.items()}
    for mode, t in times.items():
        publish, task = _sides(t)
        print(f"  {mode:10s} " + "  ".join(f"{h} {t[h]:5.1f}" for h in HOOKS)
              + f"  bg publish {t[BACKGROUND[0]]:4.1f} task {t[BACKGROUND[1]]:4.1f}"
              + f"  | publish {publish:5.1f} task {task:5.1f} sum {publish + task:5.1f}")
    ratios = sorted(sum(_sides(o)) / sum(_sides(r)) for o, r in zip(runs["pipetrace"], runs["otel"], strict=True))
    ref, ours = _sides(times["otel"]), _sides(times["pipetrace"])
    print(f"pipetrace / reference: publish {ours[0] / ref[0]:.2f}, task {ours[1] / ref[1]:.2f}, "
          f"per task {sum(ours) / sum(ref):.2f} (goal <= 0.5); per-round ratios "
          + " ".join(f"{r:.2f}" for r in ratios))


def report_throughput(args: argparse.Namespace, walls: dict[str, list[float]], producer_cpu: dict[str, list[float]],
                      main_cpu: dict[str, list[float]], pool_cpu: dict[str, list[float]]) -> None:
    def added(values: dict[str, list[float]]) -> dict[str, float]:
        med = {m: statistics.median(v) for m, v in values.items()}
        return {m: (med[m] - med["untraced"]) / args.tasks * 1e6 for m in MODES}

    wall = {m: statistics.median(v) for m, v in walls.items()}
    per = added(walls)
    worker_cpu = {m: [a + b for a, b in zip(main_cpu[m], pool_cpu[m], strict=True)] for m in MODES}
    per_cpu = added({m: [p + w for p, w in zip(producer_cpu[m], worker_cpu[m], strict=True)] for m in MODES})
    per_producer, per_worker = added(producer_cpu), added(worker_cpu)
    per_main, per_pool = added(main_cpu), added(pool_cpu)
    print(f"celery on redis, {args.tasks} no-op tasks, prefork -c 2, exporters={args.exporters}, "
          f"median of {args.rounds} interleaved rounds")
    for m in MODES:
        print(f"  {m:10s} {wall[m]:6.2f} s  {args.tasks / wall[m]:6.0f} tasks/s  {wall[m] / wall['untraced']:5.2f}x  "
              f"added per task: {per[m]:6.1f} us wall, {per_cpu[m]:6.1f} us cpu "
              f"(producer {per_producer[m]:6.1f}, worker {per_worker[m]:6.1f} = main {per_main[m]:6.1f} + "
              f"pool {per_pool[m]:6.1f})")

    def ratio(values: dict[str, float]) -> float:
        return values["pipetrace"] / values["otel"] if values["otel"] > 0 else float("nan")

    print(f"pipetrace added / reference added: wall {ratio(per):.2f}, cpu {ratio(per_cpu):.2f} "
          f"(producer {ratio(per_producer):.2f}, worker {ratio(per_worker):.2f}: main {ratio(per_main):.2f}, "
          f"pool {ratio(per_pool):.2f}) (goal <= 0.5)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved throughput rounds (0: only --hooks)")
    ap.add_argument("--db", type=int, default=14)
    ap.add_argument("--exporters", default="none")
    ap.add_argument("--hooks", action="store_true", help="also time the instrumentation hooks in place")
    ap.add_argument("--hook-rounds", type=int, default=3, help="interleaved runs per traced mode for --hooks")
    args = ap.parse_args()
    walls: dict[str, list[float]] = {m: [] for m in MODES}
    producer_cpu: dict[str, list[float]] = {m: [] for m in MODES}
    main_cpu: dict[str, list[float]] = {m: [] for m in MODES}
    pool_cpu: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(args.rounds):
        order = MODES[r % len(MODES):] + MODES[:r % len(MODES)]
        for mode in order:
            wall, p_cpu, m_cpu, c_cpu = run(mode, args.tasks, args.db, args.exporters)
            walls[mode].append(wall)
            producer_cpu[mode].append(p_cpu)
            main_cpu[mode].append(m_cpu)
            pool_cpu[mode].append(c_cpu)
            print(f"  round {r + 1} {mode:10s} {wall:6.2f} s wall  {p_cpu:6.2f} s producer cpu  "
                  f"{m_cpu:6.2f} s worker main cpu  {c_cpu:6.2f} s pool cpu", file=sys.stderr, flush=True)

    if args.rounds > 0:
        report_throughput(args, walls, producer_cpu, main_cpu, pool_cpu)
    if args.hooks:
        report_hooks(args.tasks, args.db, args.exporters, args.hook_rounds)


if __name__ == "__main__":
    main()
