"""Prefect overhead: a flow of 50 task runs (25 mapped, 24 submitted, one fan-in), three ways side by
side in one run, each in its own long-lived process with its own ephemeral server:

* ``off``: Prefect as installed, no OTel SDK and no pipetrace (native run telemetry at its default, on,
  with nothing behind it);
* ``pipetrace``: pipetrace instrumented as deployed (redaction on; ``--exporters``, default
  ``store,otlp``), native telemetry at its default (pipetrace takes over its seam);
* ``native``: Prefect's native OTel run telemetry, set up as OTel's docs tell a user: a plain SDK
  ``TracerProvider`` + ``BatchSpanProcessor`` + OTLP/HTTP exporter, no pipetrace;
* ``pt-otlp`` (an extra side, off with ``--no-otlp-only``): pipetrace exporting OTLP only, the one
  destination native telemetry has (the ``pipetrace`` side also writes its local store). Printed on lines
  of its own; the ``pipetrace`` lines and rows are the deployed set-up's, whatever ``--exporters`` says.

Prefect's own telemetry setting is the same (its default) in all three. Both traced sides export OTLP to
the same local receiver, which counts the spans it got. Rounds are paired and interleaved, the order
rotated each round. A run's CPU is that of its whole process tree (every thread, the ephemeral server
included), read after the run's spans were flushed. Prints wall and CPU as median (min, max), the
per-round ratios to ``off``, the added ms per task run; ``--markdown`` ends with the closing-note rows.
Goals (issue 24): pipetrace ≤ 1.05× off, and cheaper than native telemetry.

The whole-tree CPU is mostly Prefect's and its server's, so it cannot resolve a telemetry difference of a
few hundred µs a task run. Each process therefore also measures the telemetry's own CPU, the same way on
every side: the thread CPU (``time.thread_time``) inside the seam both go through — every call Prefect's
engines make on their ``RunTelemetry`` object (``__init__``, ``start_span``, ``update_state``, ``end_span_*``,
``record_exception``, ``update_run_name``; an overriding method's ``super()`` call is not counted twice) plus,
for pipetrace, its engine hooks (``__post_init__``, ``TaskRunner.map``/``submit``) without the wrapped
call's CPU — with the cyclic-GC runs set off inside it shown apart; and the CPU of the telemetry threads
(OTel's batch span processor; pipetrace's ``pipetrace-*`` export threads, read per thread with
``pthread_getcpuclockid``) plus the flush call's own thread CPU, after the run's spans were flushed.
Printed per task run for each side, and pipetrace / native paired per round.

    .venvs/prefect/bin/python benchmarks/prefect_overhead.py [--rounds 7] [--tasks 50] [--markdown]

``--replay`` measures pipetrace's seam alone, warm and without Prefect's engine around it: one process calls
a task run's seam (``__post_init__`` hook, ``start_span``, Running, Completed, ``end_span_on_success``) on
prepared Prefect objects, 1,000 task runs a batch with the cyclic GC off, and prints the thread CPU per task
run (median of 9 batches). With ``--before CHECKOUT`` the other checkout's ``.venvs/prefect`` runs the same
replay, alternating (the order swapped each round), so a change is compared on the same machine state (the
flow's task runs are cold and cost more; this isolates what changed)::

    .venvs/prefect/bin/python benchmarks/prefect_overhead.py --replay 3 --before /work/wt/prev
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (  # noqa: E402
    TABLE_HEADER,
    SpanCounter,
    fmt_spread,
    paired_ratios,
    paired_rounds,
    summary_row,
    tree_cpu,
)

MODES = ("off", "pipetrace", "native")
OTLP_ONLY = "pt-otlp"  # the extra side: pipetrace with native telemetry's one destination
BEFORE = "1.058 (fixed order; native telemetry off only for the baseline)"

NATIVE = r'''
def native_telemetry():
    """Prefect's native run telemetry set up as OTel's docs tell a user: a plain SDK provider + BSP + OTLP/HTTP
    (the endpoint from ``OTEL_EXPORTER_OTLP_ENDPOINT``). Returns the flush."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    provider = TracerProvider(resource=Resource.create({"service.name": "bench_prefect"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return lambda: provider.force_flush(60_000)
'''
"""Child code (shared with ``prefect_replay_callgrind.py``): defines ``native_telemetry()``."""

FLOW = r'''
from prefect import flow, task


@task
def work(i: int) -> int:
    return sum(range(200)) + i


@task
def collect(values: list[int]) -> int:
    return len(values)


@flow(name="bench_prefect")
def bench() -> int:
    half = n // 2
    mapped = work.map(range(half))
    submitted = [work.submit(i) for i in range(half, n - 1)]
    return collect(list(mapped) + submitted)
'''
"""Child code: the measured flow of ``n`` task runs (half mapped, the rest but one submitted, one fan-in)."""

ENGINE = r'''
from prefect.telemetry.run_telemetry import RunTelemetry


class Task:
    name = "work"


class Engine:
    """What pipetrace's engine hook reads of a task engine: its task and its telemetry seam."""
    task = Task()

    def __init__(self):
        self._telemetry = RunTelemetry()
'''
"""Child code (shared with ``prefect_replay_callgrind.py``): a task engine as the seam replays need it."""

CHILD = NATIVE + r'''
import json, os, sys, threading, time
from time import thread_time
mode, n, exporters = sys.argv[1], int(sys.argv[2]), sys.argv[3]
flush = lambda: None

# ---- the seam: thread CPU inside Prefect's RunTelemetry calls (and pipetrace's hooks around the engine) ----
seam: list[float] = []  # thread CPU of each outermost seam call (list.append: safe across task threads)
depth = threading.local()


def timed(fn):
    """Count ``fn``'s thread CPU unless called inside another timed call (``super()`` calls)."""
    def call(*args, **kwargs):
        if getattr(depth, "d", 0):
            return fn(*args, **kwargs)
        depth.d, start = 1, thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            seam.append(thread_time() - start)
            depth.d = 0
    return call


def timed_hook(hook):
    """A pipetrace wrapt hook ``(wrapped, instance, args, kwargs)``: its CPU without the wrapped call's."""
    def call(wrapped, instance, args, kwargs):
        inner = [0.0]

        def run_wrapped(*a, **k):
            saved, depth.d, start = getattr(depth, "d", 0), 0, thread_time()
            try:
                return wrapped(*a, **k)
            finally:
                inner[0] += thread_time() - start
                depth.d = saved
        saved, depth.d, start = getattr(depth, "d", 0), 1, thread_time()
        try:
            return hook(run_wrapped, instance, args, kwargs)
        finally:
            seam.append(thread_time() - start - inner[0])
            depth.d = saved
    return call


gc_in_seam: list[float] = []  # the cyclic GC runs that an allocation inside the seam set off


def on_gc(phase, info):
    if getattr(depth, "d", 0):
        if phase == "start":
            depth.gc = thread_time()
        elif getattr(depth, "gc", None) is not None:
            gc_in_seam.append(thread_time() - depth.gc)
            depth.gc = None


import gc
gc.callbacks.append(on_gc)
SEAM = ("__init__", "start_span", "update_state", "end_span_on_success", "end_span_on_failure",
        "record_exception", "update_run_name")


def time_seam(cls):
    for name in SEAM:
        if name in vars(cls):
            setattr(cls, name, timed(vars(cls)[name]))


def telemetry_threads():
    """CPU seconds of each live telemetry thread (OTel's batch processor, pipetrace's export threads)."""
    out = {}
    for t in threading.enumerate():
        if t.name.startswith(("Otel", "pipetrace-")) and t.ident is not None:
            try:
                out[t.ident] = time.clock_gettime(time.pthread_getcpuclockid(t.ident))
            except OSError:  # ended meanwhile
                pass
    return out


from prefect.telemetry.run_telemetry import RunTelemetry
time_seam(RunTelemetry)
if mode in ("pipetrace", "pt-otlp"):
    import pipetrace
    from pipetrace.integrations.prefect import hooks, instrument
    for name in ("_post_init", "_map", "_submit"):  # read by hooks.install() when instrument() runs
        setattr(hooks, name, timed_hook(getattr(hooks, name)))
    pipetrace.configure(exporters=exporters, otlp_endpoint=os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"])
    instrument()
    from pipetrace.integrations.prefect.telemetry import PipetraceRunTelemetry
    time_seam(PipetraceRunTelemetry)
    flush = lambda: pipetrace.force_flush(30)
elif mode == "native":
    flush = native_telemetry()
''' + FLOW + r'''


for _ in range(2):  # warm-up: the ephemeral server, imports, first-run caches
    bench()
flush()
print("ready", flush=True)
for line in sys.stdin:
    seam.clear()
    gc_in_seam.clear()
    threads = telemetry_threads()
    start = time.perf_counter()
    bench()
    wall = time.perf_counter() - start
    flush_start = thread_time()
    flush()  # the run's export work belongs to it
    flushed = thread_time() - flush_start
    after = telemetry_threads()
    background = sum(cpu - threads.get(ident, 0.0) for ident, cpu in after.items())
    print(json.dumps({"wall": wall, "seam": sum(seam), "calls": len(seam), "gc": sum(gc_in_seam),
                      "background": background, "flush": flushed}), flush=True)
'''


REPLAY = r'''
import gc, os, statistics, sys, tempfile, time, uuid
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="pipetrace-bench-replay-")
os.environ["PIPETRACE_HOME"] = os.path.join(os.environ["PREFECT_HOME"], "pt")
import pipetrace
pipetrace.configure(exporters=sys.argv[1], otlp_endpoint=sys.argv[2])
from pipetrace.adapter.runs import Run
from pipetrace.identity import RunIdentity
from pipetrace.integrations.prefect import hooks, instrument, runs
from prefect.client.schemas import TaskRun
from prefect.states import Completed, Running
from prefect.telemetry.run_telemetry import RunTelemetry
instrument()
flow_run_id = uuid.uuid4()
info = runs.flows.add(Run(RunIdentity("prefect", "bench_prefect", str(flow_run_id), None)))
info.start_span({})
runs.flow_info_for_context = lambda flow_ctx=None: info  # the flow run the tasks belong to (no FlowRunContext)

''' + ENGINE + r'''

def batch(n):
    prepared = [(Engine(), TaskRun(flow_run_id=flow_run_id, task_key="work-abc", dynamic_key=str(i), name=f"work-{i}",
                                   task_inputs={"i": []}, tags=[], labels={}), Running(), Completed())
                for i in range(n)]
    gc.collect()
    gc.disable()
    start = time.thread_time()
    for engine, run, running, done in prepared:
        hooks._post_init(lambda: None, engine, (), {})
        seam = engine._telemetry
        seam.start_span(run, None, {"i": 1})
        seam.update_state(running)
        seam.update_state(done)
        seam.end_span_on_success()
    cpu = (time.thread_time() - start) / n * 1e6
    gc.enable()
    pipetrace.force_flush(30)
    return cpu


batch(500)
print(statistics.median(batch(1000) for _ in range(9)))
'''


def replay(rounds: int, exporters: str, before: str | None) -> None:
    """``--replay``: pipetrace's seam per task run, warm (see the module doc), alternating with ``before``."""
    pythons = {"this checkout": sys.executable}
    if before:
        pythons[f"before ({before})"] = str(Path(before) / ".venvs" / "prefect" / "bin" / "python")
    got: dict[str, list[float]] = {label: [] for label in pythons}
    with SpanCounter() as receiver:
        for round_ in range(rounds):
            order = list(pythons.items())
            for label, python in order if round_ % 2 == 0 else order[::-1]:  # which goes first: alternated
                out = subprocess.run([python, "-c", REPLAY, exporters, receiver.endpoint], capture_output=True,
                                     text=True, timeout=300, cwd=Path(python).parents[3])
                if out.returncode != 0:
                    raise RuntimeError(f"{label}: {out.stderr[-2000:]}")
                got[label].append(float(out.stdout.strip().splitlines()[-1]))
    print(f"pipetrace seam replayed, thread CPU per task run (µs, median of 9 batches of 1,000; exporters "
          f"{exporters}; {rounds} processes each, alternating, the order swapped each round):")
    for label, values in got.items():
        print(f"  {label:>30s}: {fmt_spread(values, '.2f')}")
    if before:
        ours, theirs = got["this checkout"], got[f"before ({before})"]
        print(f"  this / before per round: {fmt_spread(paired_ratios(ours, theirs), '.3f')}")


class Side:
    """One mode's long-lived process; :meth:`run` runs the flow once and returns (wall, CPU of the tree)."""

    def __init__(self, mode: str, tasks: int, exporters: str, endpoint: str) -> None:
        self.prefect_home = tempfile.mkdtemp(prefix=f"pipetrace-bench-prefect-{mode}-")
        env = dict(os.environ, PREFECT_HOME=self.prefect_home, PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   PREFECT_LOGGING_LEVEL="WARNING", PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
                   PIPETRACE_HOME=os.path.join(self.prefect_home, "pt"), OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
        for name in ("PREFECT_PLUGINS_ENABLED", "PIPETRACE_AUTO", "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY",
                     "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            env.pop(name, None)
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, mode, str(tasks), exporters], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.mode = mode

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{self.mode}: the benchmark process did not start")

    def run(self) -> tuple[float, float, dict[str, float]]:
        """(wall, CPU of the whole tree, the child's telemetry measures: ``seam``, ``calls``, ``background``,
        ``flush``)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        before = sum(tree_cpu(self.proc.pid))
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        got = json.loads(self.proc.stdout.readline())
        return float(got["wall"]), sum(tree_cpu(self.proc.pid)) - before, got

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def telemetry_cpu(runs: dict[str, list[Any]], tasks: int, rounds: int, exporters: str, loads: list[str]
                  ) -> list[str]:
    """Print the telemetry's own CPU per task run, pipetrace vs native (paired per round): thread CPU inside
    the seam both sides go through (the engine's RunTelemetry calls, and pipetrace's engine hooks), and
    the telemetry threads' CPU (OTel's batch processor; pipetrace's export threads) plus the flush call's,
    read after the flush. Returns the closing-note rows."""
    def per_task(mode: str, key: str) -> list[float]:
        return [r[2][key] / tasks * 1e6 for r in runs[mode]]

    print("  telemetry CPU per task run (µs), seam calls per run: "
          + ", ".join(f"{m} {statistics.median(r[2]['calls'] for r in runs[m]):.0f}" for m in runs))
    measures: dict[str, dict[str, list[float]]] = {}
    for mode in runs:
        seam, bg, fl = per_task(mode, "seam"), per_task(mode, "background"), per_task(mode, "flush")
        gc = per_task(mode, "gc")
        measures[mode] = {"seam": seam, "export": [b + f for b, f in zip(bg, fl, strict=True)],
                          "nogc": [s - g for s, g in zip(seam, gc, strict=True)]}
        measures[mode]["total"] = [s + e for s, e in zip(seam, measures[mode]["export"], strict=True)]
        print(f"    {mode:9s} seam {fmt_spread(seam, '.1f')} (of which cyclic GC {fmt_spread(gc, '.1f')})  "
              f"export threads {fmt_spread(bg, '.1f')}  flush call {fmt_spread(fl, '.1f')}  "
              f"total {fmt_spread(measures[mode]['total'], '.1f')}")
    rows = []
    for key, label in (("seam", "in the seam"), ("nogc", "in the seam, cyclic GC runs left out"),
                       ("export", "export threads + flush"), ("total", "total")):
        ratios = paired_ratios(measures["pipetrace"][key], measures["native"][key])
        print(f"    pipetrace / native, {label}: per round {fmt_spread(ratios, '.3f')}")
        rows.append(summary_row(
            f"Prefect telemetry CPU per task run, {label}, µs (`prefect_overhead.py --rounds {rounds}`, "
            f"exporters {exporters})", "not measured", f"**{statistics.median(measures['pipetrace'][key]):.1f}**",
            f"native OTel telemetry: {statistics.median(measures['native'][key]):.1f}; pipetrace / native "
            f"{statistics.median(ratios):.3f}", f"{min(ratios):.3f}–{max(ratios):.3f} (ratio)", loads))
    if OTLP_ONLY in measures:  # like with like: one destination on both sides
        for key, label in (("seam", "in the seam"), ("export", "export threads + flush"), ("total", "total")):
            ratios = paired_ratios(measures[OTLP_ONLY][key], measures["native"][key])
            print(f"    pipetrace exporting OTLP only / native, {label}: per round {fmt_spread(ratios, '.3f')}")
            rows.append(summary_row(
                f"Prefect telemetry CPU per task run, {label}, µs, **pipetrace exporting OTLP only** (like native; "
                f"`prefect_overhead.py --rounds {rounds}`)", "not measured",
                f"**{statistics.median(measures[OTLP_ONLY][key]):.1f}**", f"native OTel telemetry: "
                f"{statistics.median(measures['native'][key]):.1f}; pipetrace (OTLP only) / native "
                f"{statistics.median(ratios):.3f}", f"{min(ratios):.3f}–{max(ratios):.3f} (ratio)", loads))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--exporters", default="store,otlp", help="pipetrace exporters for the traced runs")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--no-otlp-only", action="store_true", help=f"leave out the extra {OTLP_ONLY} side")
    parser.add_argument("--replay", type=int, metavar="ROUNDS", help="only replay pipetrace's seam (module doc)")
    parser.add_argument("--before", help="with --replay: a checkout whose .venvs/prefect replays alternately")
    args = parser.parse_args()
    if args.replay:
        replay(args.replay, args.exporters, args.before)
        return
    modes = MODES if args.no_otlp_only else (*MODES, OTLP_ONLY)
    spans: dict[str, list[int]] = {m: [] for m in modes}
    with SpanCounter() as receiver:
        sides = {m: Side(m, args.tasks, "otlp" if m == OTLP_ONLY else args.exporters, receiver.endpoint)
                 for m in modes}  # start together
        for side in sides.values():
            side.wait_ready()
        time.sleep(1.0)

        def one(mode: str, _round: int) -> tuple[float, float, dict[str, float]]:
            before = receiver.spans
            out = sides[mode].run()
            receiver.wait_for(before + 1, 5.0 if mode != "off" else 0.0)
            time.sleep(0.1)
            spans[mode].append(receiver.spans - before)
            return out

        try:
            runs, loads = paired_rounds(modes, args.rounds, one)
        finally:
            for side in sides.values():
                side.close()
    print(f"prefect flow of {args.tasks} task runs, {args.rounds} paired rounds (rotating order), "
          f"pipetrace exporters {args.exporters}; spans received per run: "
          + ", ".join(f"{m} {min(spans[m])}–{max(spans[m])}" for m in modes))
    rows = []
    for k, label in ((0, "wall"), (1, "CPU")):
        column = {m: [r[0] if k == 0 else r[1] for r in runs[m]] for m in modes}  # this measure of each run
        off = column["off"]
        print(f"  {label}: off {fmt_spread(off, '.3f')} s")
        for mode in modes[1:]:
            values = column[mode]
            ratios = paired_ratios(values, off)
            added = [(b - a) / args.tasks * 1000 for a, b in zip(off, values, strict=True)]
            print(f"    {mode:9s} {fmt_spread(values, '.3f')} s  ratio per round {fmt_spread(ratios, '.3f')}  "
                  f"added per task run {fmt_spread(added, '+.2f')} ms")
        ours = paired_ratios(column["pipetrace"], off)
        native = paired_ratios(column["native"], off)
        vs_native = paired_ratios(column["pipetrace"], column["native"])
        print(f"    pipetrace / native per round {fmt_spread(vs_native, '.3f')} (goal: pipetrace <= 1.05x off, "
              f"and cheaper than native)")
        rows.append(summary_row(
            f"Prefect {args.tasks}-task flow {label}, pipetrace / off (`prefect_overhead.py --rounds {args.rounds}`,"
            f" exporters {args.exporters})", BEFORE if k == 0 else "not measured",
            f"**{statistics.median(ours):.3f}**", f"native OTel telemetry (plain SDK + BSP + OTLP): "
            f"{statistics.median(native):.3f}; pipetrace / native {statistics.median(vs_native):.3f}",
            f"{min(ours):.3f}–{max(ours):.3f}", loads))
    rows.extend(telemetry_cpu(runs, args.tasks, args.rounds, args.exporters, loads))
    if args.markdown:
        print(TABLE_HEADER)
        print("\n".join(rows))


if __name__ == "__main__":
    main()
