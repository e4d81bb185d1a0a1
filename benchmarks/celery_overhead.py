"""Celery overhead: N no-op tasks through a real prefork worker (concurrency 2) on Redis, side by side
in one run: untraced, the reference, and pipetrace (``pipetrace run --``), every side exporting.

* **The reference** is ``opentelemetry-instrumentation-celery`` set up as its own docs tell a user, with
  no pipetrace anywhere in its processes: a plain SDK ``TracerProvider`` + ``BatchSpanProcessor`` +
  OTLP/HTTP exporter (``pipeline_app.setup_reference_tracing``; in the pool children from
  ``worker_process_init``, in the producer at start).
* **pipetrace** runs as deployed: ``pipetrace run --`` with its default processing (redaction on) and
  ``--exporters`` (default ``otlp``; ``store,otlp`` adds the embedded store as a deployment with an
  endpoint has it).
* Both export OTLP/HTTP to the same local receiver (:class:`_harness.SpanCounter`), which counts the spans
  it got: completeness (got / expected) and wire bytes per span are printed per side.
* Rounds are interleaved and paired, the order rotated each round; every figure is printed as median
  (min, max) over the rounds, and the per-round paired ratios with their spread.
* CPU: the producer's (every thread, ``process_time``) and the whole worker's (main process and pool
  children, every thread, from /proc), read **after the receiver has every span** of the run, so
  background work (batching, redaction, encoding, export) is counted; the warm-up's spans are drained
  before the window opens.
* Wall: from the first publish to the last result (what a producer waiting on results sees), and to
  the moment the receiver has every span ("drained"; it includes each side's idle batch delay — the
  SDK's 5 s ``schedule_delay`` for the tail — so it is printed, not used for the ratio).

Goal (issue 24): pipetrace's added CPU and wall per task <= 0.5x the reference's.

``--before <checkout>`` adds a fourth mode, ``before``: another checkout of pipetrace (with its own
``.venvs/celery``) run as pipetrace in the same interleaved rounds, so before/after figures share a load.
The shared Redis is used as the project's rules ask: DB 0, every key of a run under its own prefix
(``PIPETRACE_EXAMPLE_KEYPREFIX``), deleted after the run.

``--hooks`` adds ``--hook-rounds`` more runs per traced mode, interleaved, that time each Celery signal
carrying the instrumentation's handlers where it runs (thread CPU per call, medians after the warm-up),
plus the CPU of every other thread of those processes per task ("bg"). ``--markdown`` ends with the
closing-note rows (measure | before | after | reference | spread | load).

    python benchmarks/celery_overhead.py [--tasks 2000] [--rounds 5] [--db 0] [--exporters otlp|store,otlp|none]
                                         [--hooks] [--hook-rounds 3] [--before <checkout>] [--markdown]
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (  # noqa: E402
    TABLE_HEADER,
    SpanCounter,
    fmt_spread,
    load_range,
    paired_ratios,
    paired_rounds,
    spread,
    summary_row,
    tree_cpu,
)

ROOT = Path(__file__).resolve().parents[1]
APP_DIR = ROOT / "example_dags" / "celery"
BIN = Path(sys.executable).parent
MODES = ("untraced", "otel", "pipetrace")
SPANS_PER_TASK = {"untraced": 0, "otel": 2, "pipetrace": 2, "before": 2}  # a publish span and a task span
CHECKOUTS: dict[str, Path] = {}  # mode -> another checkout run as pipetrace (``--before``: the "before" figures)
WARMUP = 200
BEFORE = {"cpu": "0.40–0.46 (hooks only, exporters none, reference under pipetrace's provider)",
          "wall": "0.23 (exporters none)"}

PRODUCER = r'''
import json, os, sys, time
import pipeline_app
from pipeline_app import noop
if os.environ.get("PIPETRACE_EXAMPLE_OTEL") == "reference":
    pipeline_app.setup_reference_tracing()
n, warm = int(sys.argv[1]), int(sys.argv[2])
# warm-up outside the window: connections, and every pool child's first-task imports
for r in [noop.delay() for _ in range(warm)]:
    r.get(timeout=120)
print("ready", flush=True)
sys.stdin.readline()
t0, c0 = time.perf_counter(), time.process_time()
results = [noop.delay() for _ in range(n)]
for r in results:
    r.get(timeout=300)
print(json.dumps({"seconds": time.perf_counter() - t0}), flush=True)
sys.stdin.readline()  # the receiver has every span: this process's background export work is done
print(json.dumps({"cpu": time.process_time() - c0}), flush=True)
'''


HOOK_SHIM = r'''
"""Times each Celery signal send (thread CPU ns) and writes medians per signal for this process, plus
the CPU time of the process's other threads (an instrumentation's background work) per task."""
import json, os, statistics, time


def _other_threads_ns():
    """CPU of every thread but the calling (main) one, those that ended included (a batch processor's
    thread joined at exit): the process's CPU clock counts them, a per-thread clock no longer can."""
    return time.process_time_ns() - time.thread_time_ns()


def _shim():
    import atexit

    from celery.signals import worker_process_shutdown
    from celery.utils.dispatch import signal as dispatch

    send, clock, out = dispatch.Signal.send, time.thread_time_ns, os.environ["PIPETRACE_BENCH_HOOKS"]
    calls, base = {}, {}

    def write(*_args, **_kwargs):
        rows = {k: [statistics.median(v[SKIP:]), len(v) - SKIP, statistics.fmean(v[SKIP:])]
                for k, v in calls.items() if len(v) > SKIP}
        for name in base:  # other threads' CPU per call since the warm-up (mean, not median)
            per_call = (_other_threads_ns() - base[name]) / (len(calls[name]) - SKIP)
            rows[f"background {name}"] = [per_call, len(calls[name]) - SKIP, per_call]
        with open(os.path.join(out, f"{os.getpid()}.json"), "w") as fh:
            json.dump(rows, fh)

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
                    write()

    dispatch.Signal.send = timed_send
    # and once more when the process ends (after the receiver had every span): background work done after
    # the last task — a batch processor's last batches — is counted for every side alike
    atexit.register(write)
    worker_process_shutdown.connect(write, weak=False)


SKIP = int(os.environ.get("PIPETRACE_BENCH_HOOKS_SKIP", "100"))  # each process's warm-up calls
if os.environ.get("PIPETRACE_BENCH_HOOKS"):
    _shim()
'''
HOOKS = ("before_task_publish", "after_task_publish", "task_prerun", "task_postrun")
BACKGROUND = ("background after_task_publish", "background task_postrun")


@dataclass
class Run:
    wall: float  # first publish -> last result
    drained: float  # first publish -> receiver has every span
    producer: float  # CPU seconds, every thread, after the drain
    main: float  # worker main process
    pool: float  # pool children
    got: int
    expected: int
    wire: int  # bytes received

    @property
    def cpu(self) -> float:
        return self.producer + self.main + self.pool


def run(mode: str, n: int, db: int, exporters: str, receiver: SpanCounter, hooks: Path | None = None) -> Run:
    """One run of n tasks in ``mode``; with ``hooks`` (a folder), the timing shim runs in every process."""
    receiver.reset()
    with tempfile.TemporaryDirectory() as home:
        side = side_setup(mode, home, db, exporters, receiver.endpoint)
        env = side.env
        if hooks is not None:
            (hooks / "sitecustomize.py").write_text(HOOK_SHIM)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(hooks), env.get("PYTHONPATH", "")) if p)
            env["PIPETRACE_BENCH_HOOKS"] = str(hooks / "out")
            (hooks / "out").mkdir(exist_ok=True)
        per_task = spans_per_task(mode, exporters)
        worker = start_worker(side)
        producer = None
        try:
            producer = subprocess.Popen([*side.prefix, str(side.bin_dir / "python"), "-c", PRODUCER, str(n),
                                         str(WARMUP)], cwd=side.app_dir, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
            assert producer.stdin is not None and producer.stdout is not None
            if producer.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{mode}: producer did not start; worker log:\n{side.log.read_text()[-2000:]}")
            receiver.wait_for(WARMUP * per_task, 30)  # the warm-up's spans are out before the window opens
            time.sleep(0.5)
            base_spans, base_bytes = receiver.spans, receiver.bytes
            cpu0 = tree_cpu(worker.pid)
            t0 = time.perf_counter()
            producer.stdin.write("go\n")
            producer.stdin.flush()
            wall = float(json.loads(producer.stdout.readline())["seconds"])
            expected = (WARMUP + n) * per_task
            receiver.wait_for(expected, 60)
            drained = time.perf_counter() - t0
            cpu1 = tree_cpu(worker.pid)
            producer.stdin.write("report\n")
            producer.stdin.flush()
            producer_cpu = float(json.loads(producer.stdout.readline())["cpu"])
            producer.wait(60)
            return Run(wall, drained if per_task else wall, producer_cpu, cpu1[0] - cpu0[0], cpu1[1] - cpu0[1],
                       receiver.spans - base_spans, n * per_task, receiver.bytes - base_bytes)
        finally:
            stop_side(side, worker, producer, db)


@dataclass
class SideSetup:
    """How one side's processes run: its checkout's binaries and app, its environment (its own queue and
    Redis key prefix, the receiver as its OTLP endpoint) and the command prefix (``pipetrace run --``)."""

    mode: str
    bin_dir: Path
    app_dir: Path
    env: dict[str, str]
    prefix: list[str]
    queue: str
    prefix_key: str
    log: Path
    redis_port: int = 6379  # the shared Redis, or a benchmark's private one (``celery_latency.py --one-cpu``)


def spans_per_task(mode: str, exporters: str) -> int:
    """Spans the receiver gets per task from ``mode`` (pipetrace sends OTLP only with the ``otlp`` exporter; a mode
    not in :data:`SPANS_PER_TASK`, such as a second untraced side, sends none)."""
    return SPANS_PER_TASK.get(mode, 0) if "otlp" in exporters.split(",") or mode == "otel" else 0


def side_setup(mode: str, home: str, db: int, exporters: str, endpoint: str, redis_port: int = 6379) -> SideSetup:
    """``mode``'s set-up in ``home`` (a fresh folder); a checkout in :data:`CHECKOUTS` runs its own binaries;
    broker and result backend on the Redis at ``redis_port``."""
    checkout = CHECKOUTS.get(mode)
    bin_dir = checkout / ".venvs" / "celery" / "bin" if checkout is not None else BIN
    app_dir = checkout / "example_dags" / "celery" if checkout is not None else APP_DIR
    queue = f"bench-{uuid.uuid4().hex[:6]}"
    prefix_key = f"pipetrace-bench-{uuid.uuid4().hex[:8]}:"  # a shared Redis: DB 0, keys under our prefix
    env = dict(os.environ, PIPETRACE_HOME=home, PIPETRACE_EXAMPLE_QUEUE=queue,
               PIPETRACE_EXAMPLE_BROKER=f"redis://127.0.0.1:{redis_port}/{db}",
               PIPETRACE_EXAMPLE_BACKEND=f"redis://127.0.0.1:{redis_port}/{db}", PIPETRACE_EXAMPLE_KEYPREFIX=prefix_key,
               PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", PIPETRACE_EXPORTERS=exporters,
               OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
    for name in ("PIPETRACE_AUTO", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "PIPETRACE_EXAMPLE_OTEL"):
        env.pop(name, None)
    if mode == "otel":
        env["PIPETRACE_EXAMPLE_OTEL"] = "reference"
    if checkout is not None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # another checkout is only read
    prefix = [str(bin_dir / "pipetrace"), "run", "--"] if mode in ("pipetrace", "before") else []
    return SideSetup(mode, bin_dir, app_dir, env, prefix, queue, prefix_key, Path(home) / "worker.log", redis_port)


def start_worker(side: SideSetup, preexec_fn: Callable[[], None] | None = None,
                 extra: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """The side's real prefork worker (``-c 2``; gossip, mingle and heartbeat off), its output in ``side.log``;
    ``preexec_fn`` runs in the worker's process before it starts (``celery_latency.py --pin``); ``extra``: more
    worker options (``celery_toggle.py``'s ``-I`` of its switch module)."""
    with open(side.log, "wb") as fh:
        return subprocess.Popen(
            [*side.prefix, str(side.bin_dir / "celery"), "-A", "pipeline_app", "worker", "-P", "prefork", "-c", "2",
             "-Q", side.queue, "-n", f"{side.queue}@%h", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-l", "warning", *extra], cwd=side.app_dir, env=side.env, stdout=fh,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=preexec_fn)


def stop_side(side: SideSetup, worker: subprocess.Popen[bytes], producer: subprocess.Popen[str] | None,
              db: int) -> None:
    """Stop the producer and the worker (SIGTERM, then the whole group) and delete the side's Redis keys."""
    if producer is not None and producer.poll() is None:
        producer.kill()
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
    _delete_keys(db, side.prefix_key, side.redis_port)


def _delete_keys(db: int, prefix: str, port: int = 6379) -> None:
    """Remove this run's keys (and only them) from the Redis it used (the shared one: others' keys stay)."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, db=db)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i:i + 500])


def hook_times(mode: str, n: int, db: int, exporters: str, receiver: SpanCounter) -> dict[str, float]:
    """Median thread CPU µs per call of each traced signal in ``mode``, and the mean CPU µs per call of
    the process's other threads (pool children averaged); ``mean <signal>``: the signal's mean per call
    (a median leaves out the occasional expensive call — a collection, a thread's wake-up — a mean does not)."""
    with tempfile.TemporaryDirectory() as folder:
        run(mode, n, db, exporters, receiver, hooks=Path(folder))
        found: dict[str, list[float]] = {}
        for path in (Path(folder) / "out").glob("*.json"):
            for name, (median_ns, _count, mean_ns) in json.loads(path.read_text()).items():
                found.setdefault(name, []).append(median_ns / 1000)
                found.setdefault(f"mean {name}", []).append(mean_ns / 1000)
    names = (*HOOKS, *BACKGROUND, *(f"mean {h}" for h in HOOKS))
    return {name: statistics.fmean(found[name]) if name in found else 0.0 for name in names}


def _sides(t: dict[str, float]) -> tuple[float, float]:
    """(publish, task) µs: the signal handlers plus the background threads' share of each side."""
    return (t["before_task_publish"] + t["after_task_publish"] + t[BACKGROUND[0]],
            t["task_prerun"] + t["task_postrun"] + t[BACKGROUND[1]])


def report_hooks(args: argparse.Namespace, receiver: SpanCounter) -> str:
    """Print the in-place hook times; return the closing-note row."""
    modes = ("otel", "pipetrace", *CHECKOUTS)
    runs, loads = paired_rounds(modes, args.hook_rounds,
                                lambda mode, _r: hook_times(mode, args.tasks, args.db, args.exporters, receiver))
    print(f"instrumentation hooks, thread CPU per call (median over calls; pool children averaged), plus the "
          f"other threads' CPU per task ('bg'), us; median of {args.hook_rounds} interleaved runs, "
          f"load {load_range(loads)}:")
    times = {mode: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for mode, rs in runs.items()}
    for mode, t in times.items():
        publish, task = _sides(t)
        print(f"  {mode:10s} " + "  ".join(f"{h} {t[h]:5.1f}" for h in HOOKS)
              + f"  bg publish {t[BACKGROUND[0]]:4.1f} task {t[BACKGROUND[1]]:4.1f}"
              + f"  | publish {publish:5.1f} task {task:5.1f} sum {publish + task:5.1f}"
              + f"  (handlers' means: {sum(t[f'mean {h}'] for h in HOOKS):5.1f} vs medians "
              + f"{sum(t[h] for h in HOOKS):5.1f})")
    ratios = paired_ratios([sum(_sides(o)) for o in runs["pipetrace"]], [sum(_sides(r)) for r in runs["otel"]])
    ref, ours = _sides(times["otel"]), _sides(times["pipetrace"])
    print(f"pipetrace / reference: publish {ours[0] / ref[0]:.2f}, task {ours[1] / ref[1]:.2f}, "
          f"per task {sum(ours) / sum(ref):.2f} (goal <= 0.5); per-round ratios {fmt_spread(ratios)}")
    low, _mid, high = spread(ratios)
    before = "0.40–0.46 (exporters none, reference under pipetrace's provider)"
    if "before" in times:
        old = _sides(times["before"])
        old_ratios = paired_ratios([sum(_sides(o)) for o in runs["before"]], [sum(_sides(r)) for r in runs["otel"]])
        print(f"before / reference: publish {old[0] / ref[0]:.2f}, task {old[1] / ref[1]:.2f}, per task "
              f"{sum(old) / sum(ref):.2f}; per-round ratios {fmt_spread(old_ratios)}")
        before = f"{sum(old) / sum(ref):.2f} ({sum(old):.0f} µs; per round {min(old_ratios):.2f}–{max(old_ratios):.2f})"
    return summary_row(f"Celery hooks + background threads, CPU per task, pipetrace / reference (`celery_overhead.py "
                       f"--rounds 0 --hooks --hook-rounds {args.hook_rounds}`, exporters {args.exporters})",
                       before,
                       f"**{sum(ours) / sum(ref):.2f}** ({sum(ours):.0f} µs)",
                       f"{sum(ref):.0f} µs: otel-instrumentation-celery, plain SDK + BSP + OTLP/HTTP",
                       f"per round {low:.2f}–{high:.2f}", loads)


def report_throughput(args: argparse.Namespace, runs: dict[str, list[Run]], loads: list[str]) -> list[str]:
    """Print the figures; return the closing-note rows."""
    n = args.tasks

    def per_task(mode: str, field: str) -> list[float]:
        """Added µs per task, paired with the untraced run of the same round."""
        return [(getattr(a, field) - getattr(u, field)) / n * 1e6
                for a, u in zip(runs[mode], runs["untraced"], strict=True)]

    print(f"celery on redis, {n} no-op tasks, prefork -c 2, pipetrace exporters={args.exporters}, "
          f"{args.rounds} interleaved rounds (rotating order), median (min, max); load {load_range(loads)}")
    for m in runs:
        rs = runs[m]
        print(f"  {m:10s} wall {fmt_spread([r.wall for r in rs])} s, "
              f"drained {fmt_spread([r.drained for r in rs])} s, cpu {fmt_spread([r.cpu for r in rs])} s")
        if m != "untraced":
            got, want = sum(r.got for r in rs), sum(r.expected for r in rs)
            wire = sum(r.wire for r in rs) / got if got else 0.0
            print(f"    added per task: wall {fmt_spread(per_task(m, 'wall'), '.1f')} us, "
                  f"cpu {fmt_spread(per_task(m, 'cpu'), '.1f')} us "
                  f"(producer {statistics.median(per_task(m, 'producer')):.1f}, "
                  f"worker main {statistics.median(per_task(m, 'main')):.1f}, "
                  f"pool {statistics.median(per_task(m, 'pool')):.1f}); "
                  f"spans received {got}/{want}, {wire:.0f} bytes a span on the wire")
    rows = []
    for field, label in (("cpu", "CPU"), ("wall", "wall")):
        ref = per_task("otel", field)
        before = BEFORE[field]
        if "before" in runs:
            old = per_task("before", field)
            old_ratio = statistics.median(old) / statistics.median(ref) if statistics.median(ref) > 0 else float("nan")
            old_low, _m, old_high = spread(paired_ratios(old, ref))
            print(f"before ({args.before}) added / reference added, {label}: {old_ratio:.2f}; per-round ratios "
                  f"{fmt_spread(paired_ratios(old, ref))}")
            before = f"{old_ratio:.2f} ({statistics.median(old):.0f} µs; per round {old_low:.2f}–{old_high:.2f})"
        ours = per_task("pipetrace", field)
        ratios = paired_ratios(ours, ref)
        of_medians = statistics.median(ours) / statistics.median(ref) if statistics.median(ref) > 0 else float("nan")
        print(f"pipetrace added / reference added, {label}: {of_medians:.2f} (ratio of medians; goal <= 0.5); "
              f"per-round ratios {fmt_spread(ratios)}")
        low, _mid, high = spread(ratios)
        rows.append(summary_row(
            f"Celery added {label} per task, pipetrace / reference (`celery_overhead.py --tasks {n} "
            f"--rounds {args.rounds}`, exporters {args.exporters})", before,
            f"**{of_medians:.2f}** ({statistics.median(ours):.0f} µs)",
            f"{statistics.median(ref):.0f} µs: otel-instrumentation-celery, plain SDK + BatchSpanProcessor + OTLP/HTTP",
            f"per round {low:.2f}–{high:.2f}", loads))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved throughput rounds (0: only --hooks)")
    ap.add_argument("--db", type=int, default=0, help="Redis DB (shared Redis: 0, keys under a per-run prefix)")
    ap.add_argument("--before", type=Path, help="another checkout (with its .venvs/celery) run as a 4th mode, "
                    "'before', in the same interleaved rounds")
    ap.add_argument("--exporters", default="otlp", help="pipetrace's exporters (the reference always exports OTLP)")
    ap.add_argument("--hooks", action="store_true", help="also time the instrumentation hooks in place")
    ap.add_argument("--hook-rounds", type=int, default=3, help="interleaved runs per traced mode for --hooks")
    ap.add_argument("--markdown", action="store_true", help="end with the closing-note table rows")
    args = ap.parse_args()
    modes: tuple[str, ...] = MODES
    if args.before is not None:
        CHECKOUTS["before"] = args.before.resolve()
        modes = (*MODES, "before")

    def echo(mode: str, r: int, x: Run) -> None:
        print(f"  round {r + 1} {mode:10s} {x.wall:6.2f} s wall  {x.drained:6.2f} s drained  "
              f"{x.producer:6.2f} s producer cpu  {x.main:6.2f} s worker main  {x.pool:6.2f} s pool  "
              f"spans {x.got}/{x.expected}",
              file=sys.stderr, flush=True)

    rows: list[str] = []
    with SpanCounter() as receiver:
        if args.rounds > 0:
            runs, loads = paired_rounds(modes, args.rounds,
                                        lambda mode, _r: run(mode, args.tasks, args.db, args.exporters, receiver),
                                        echo=echo)
            rows = report_throughput(args, runs, loads)
        if args.hooks:
            rows.append(report_hooks(args, receiver))
    if args.markdown and rows:
        print(TABLE_HEADER)
        print("\n".join(rows))


if __name__ == "__main__":
    main()
