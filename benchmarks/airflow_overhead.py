"""Overhead of pipetrace on Airflow: a 50-task DAG through ``dag.test()``, with and without pipetrace,
in paired rounds in one process (the order alternates each round: off→on, on→off, ...).

pipetrace runs as deployed: redaction on, exporting (``--exporters``, default ``store,otlp``: the
embedded store plus OTLP/HTTP to a local receiver that counts the spans it got). Each run's CPU (every
thread of this process plus reaped children) is read after ``force_flush``, so the export work of the
traced run is counted; the local receiver's handler CPU (``SpanCounter.cpu_s``: the collector's side,
another process in a deployment) is taken out. Prints wall, CPU (the headline) and the run thread's CPU
(where the listener hooks run; Airflow's in-process Execution API thread takes most of the rest) as
median (min, max) with a 95 % CI of the median per-round ratio, and the added milliseconds per task;
``--markdown`` ends with the closing-note rows (wall and CPU).

    .venvs/airflow/bin/python benchmarks/airflow_overhead.py [--rounds 20] [--exporters store,otlp] [--gc freeze|auto]
        [--hooks N | --threads N | --calls] [--markdown]

Where the per-round spread comes from (measured with this file's code): the machine's load (a run's CPU
time itself inflates under contention), and the cyclic GC, whose full collections of Airflow's large heap
(seen: 0.5 s in one ~4.5 s run, ~0.1 s in the others) land in whichever run crosses the threshold, and
collect what earlier runs (of either mode) left. Hence, with ``--gc freeze`` (default): both modes are warmed up
once, and before each run (outside its window) the heap is collected and frozen, so every run starts from
the same heap; after the run, inside its window, a collection takes what the run itself left (only objects
made since the freeze are scanned: a few ms, charged to both sides alike). ``--gc auto`` leaves the GC
alone, as before. On a loaded machine the spread stays wide: decide by the CI, or by ``--hooks``.

``--hooks N`` measures pipetrace's own work instead, steadier than the ratio on a shared machine: N traced
runs, the thread CPU of the listener hooks and of the XCom-read observers (per hook, per task instance,
as a share of the run thread's CPU), the CPU of pipetrace's export threads a run, the spans of Airflow's
own tracer that pass through pipetrace's provider, then the Python calls pipetrace adds to the run thread
per run (cProfile, traced minus untraced, with the functions adding most). Any checkout's venv runs this
file, so two checkouts compare side by side (``/work/wt/prev/.venvs/airflow/bin/python
benchmarks/airflow_overhead.py --hooks 6``).

``--threads N`` says where the whole process's extra CPU goes, which the run thread's does not show: N
paired rounds, the CPU of every thread (by name, threads that ended during a run included: Airflow's
in-process Execution API serves each request on its event-loop thread and AnyIO worker threads), of
pipetrace's export threads and of the cyclic GC's collections, traced minus untraced per task. Under load
that CPU is noisy; ``--calls`` counts the Python calls each thread makes in one traced and one untraced run
instead (deterministic; slow: a profile hook sees every call).

The DAG: one source task whose XCom 48 parallel tasks read, and one sink reading all of them, so the
XCom-link path (carrier push + reads) is part of what is measured.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import TICK, SpanCounter, paired_rounds, print_per_kind, report_on_off  # noqa: E402

TASKS = 50
BEFORE = "1.053 and 1.062 (fixed off→on order, store only)"


def _cpu() -> float:
    """CPU seconds of this process (every thread) and of its reaped children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _setup(home: Path) -> None:
    os.environ.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING", "PIPETRACE_HOME": str(home / "pt"),
    })
    (home / "dags").mkdir(parents=True, exist_ok=True)


DAG_SOURCE = f"""
from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="pt_bench_50", schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def bench():
    @task
    def source() -> int:
        return 1

    @task
    def work(x: int) -> int:
        return x + 1

    @task
    def sink(*values: int) -> int:
        return sum(values)

    s = source()
    sink(*[work.override(task_id=f"work_{{i}}")(s) for i in range({TASKS - 2})])


bench()
"""


def _dag(home: Path) -> Any:
    """dag.test() syncs the DAG from the dags folder, so the benchmark DAG lives in a file there."""
    from airflow.dag_processing.dagbag import DagBag

    path = home / "dags" / "pt_bench_50.py"
    path.write_text(DAG_SOURCE)
    return DagBag(dag_folder=str(path)).dags["pt_bench_50"]


def _thread_cpu(names: tuple[str, ...]) -> float:
    """CPU seconds so far of this process's live threads whose name starts with one of ``names``."""
    total = 0.0
    for t in threading.enumerate():
        if t.name.startswith(names) and t.native_id is not None:
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/self/task/{t.native_id}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def hooks(bench: Any, runs: int, receiver: SpanCounter) -> None:
    """See the module doc: thread CPU of pipetrace's hooks and XCom observers per task instance, the export
    threads' CPU per run, then the Python calls pipetrace adds to the run thread per run."""
    import collections
    import cProfile
    import pstats

    import pipetrace
    from airflow.listeners.listener import get_listener_manager as core_listeners
    from airflow.sdk.bases.xcom import BaseXCom
    from airflow.sdk.execution_time.lazy_sequence import LazyXComSequence
    from airflow.sdk.listener import get_listener_manager as sdk_listeners
    from opentelemetry.sdk.trace import Span
    from pipetrace.adapter.patching import observe, unwrap
    from pipetrace.integrations import airflow as adapter
    from pipetrace.integrations.airflow import plugin, xcom

    clock = time.thread_time
    cpu: dict[str, float] = collections.defaultdict(float)
    count: collections.Counter[str] = collections.Counter()

    def timed(kind: str, function: Any, skip: int = 0) -> Any:
        def call(*args: Any) -> Any:
            start = clock()
            try:
                return function(*args)
            finally:
                cpu[kind] += clock() - start
                count[kind] += 1
        return call

    for manager in (core_listeners(), sdk_listeners()):  # the listener's own entries in both hook relays
        for caller in manager.pm.get_hookcallers(plugin.listener) or []:
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin.listener:
                    impl.function = timed(caller.name, impl.function)
    observers = ((BaseXCom, "get_one", xcom._got_one), (BaseXCom, "get_all", xcom._got_all),
                 (LazyXComSequence, "__getitem__", xcom._got_items))
    for owner, name, got in observers:  # the same observers, timed after Airflow's part of the read
        unwrap(owner, name)
        observe(owner, name, timed(f"xcom {name}", got))
    foreign: collections.Counter[str] = collections.Counter()
    span_start = Span.start

    def counted_start(self: Any, *args: Any, **kwargs: Any) -> Any:
        scope = getattr(self.instrumentation_scope, "name", "")
        if not scope.startswith("pipetrace"):
            foreign[scope] += 1
        return span_start(self, *args, **kwargs)

    Span.start = counted_start  # type: ignore[method-assign]
    adapter.instrument()
    bench.test()
    pipetrace.force_flush(30)
    cpu.clear()
    count.clear()
    foreign.clear()
    export0, run0, process0 = _thread_cpu(("pipetrace",)), clock(), _cpu() - receiver.cpu_s
    for _ in range(runs):
        bench.test()
    run_cpu = (clock() - run0) / runs
    pipetrace.force_flush(30)
    export = (_thread_cpu(("pipetrace",)) - export0) / runs
    process = (_cpu() - receiver.cpu_s - process0) / runs  # the collector's side is not the run's
    Span.start = span_start  # type: ignore[method-assign]
    total = sum(cpu.values()) / runs
    print(f"pipetrace's hooks on the run thread: {total * 1e3:.2f} ms thread CPU a run, {total / TASKS * 1e6:.0f} µs "
          f"a task instance ({total / run_cpu:.2%} of the run thread's {run_cpu * 1e3:.0f} ms), {runs} runs")
    print_per_kind(cpu, count, runs, 28)
    print(f"pipetrace's export threads: {export * 1e3:.2f} ms thread CPU a run ({export / TASKS * 1e6:.0f} µs a task "
          f"instance; read from /proc in {1e3 / TICK:.0f} ms ticks over all {runs} runs)")
    rest = process - total - export
    print(f"hooks + export = {(total + export) / rest:.2%} of the rest of the process's CPU a run ({rest:.2f} s, "
          f"receiver out): a floor of the CPU ratio's excess (indirect costs such as GC are not in it)")
    print("spans of other scopes through pipetrace's provider a run (Airflow's own tracer; dropped by the "
          "adapter's filter): " + ", ".join(f"{k} {v / runs:.0f}" for k, v in foreign.most_common()))
    for owner, name, _got in observers:
        unwrap(owner, name)
    xcom.install()
    calls: dict[str, float] = {}
    added: collections.Counter[str] = collections.Counter()
    each = max(runs // 3, 1)
    for mode in ("on", "off", "on", "off"):
        (adapter.instrument if mode == "on" else adapter.uninstrument)()
        profile = cProfile.Profile(clock)
        profile.enable()
        for _ in range(each):
            bench.test()
        profile.disable()
        stats = pstats.Stats(profile)
        calls[mode] = calls.get(mode, 0) + stats.total_calls / each / 2  # type: ignore[attr-defined]
        sign = 1 if mode == "on" else -1
        for (path, _line, func), row in stats.stats.items():  # type: ignore[attr-defined]
            added[f"{Path(path).name}:{func}"] += sign * row[1] / each / 2
    adapter.instrument()
    print(f"Python calls on the run thread a run: {calls['off']:.0f} untraced, +{calls['on'] - calls['off']:.0f} "
          f"traced (+{calls['on'] / calls['off'] - 1:.2%}); most added:")
    for name, n in added.most_common(12):
        print(f"  {n:8.0f}  {name}")


def threads(bench: Any, rounds: int, receiver: SpanCounter) -> None:
    """See the module doc: where a traced run's extra CPU goes, thread by thread (threads that ended during
    the run included), and the cyclic GC's share, over paired rounds (traced minus untraced, per task)."""
    import collections
    import re

    import pipetrace
    from pipetrace.integrations import airflow as adapter

    ended: dict[str, float] = collections.defaultdict(float)
    boot = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

    def kind(thread: threading.Thread) -> str:
        return re.sub(r"[-_ ]?\d+", "#", thread.name)

    def counted(self: threading.Thread) -> None:  # a thread's CPU when it ends (Airflow starts some per run)
        try:
            boot(self)
        finally:
            ended[kind(self)] += time.thread_time()

    collecting = [0.0, 0.0, 0.0]  # thread CPU in collections, when the current one started, collections

    def on_gc(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            collecting[1] = time.thread_time()
        else:
            collecting[0] += time.thread_time() - collecting[1]
            collecting[2] += 1

    def snapshot() -> dict[str, float]:
        out: dict[str, float] = dict(ended)
        for t in threading.enumerate():
            with contextlib.suppress(Exception):
                out[kind(t)] = out.get(kind(t), 0.0) + time.clock_gettime(time.pthread_getcpuclockid(t.ident or 0))
        out.update({"(GC: its collections' CPU, in the threads above)": collecting[0],
                    "(GC collections)": collecting[2], "(local OTLP receiver, not counted below)": receiver.cpu_s,
                    "whole process, receiver out": _cpu() - receiver.cpu_s})
        return out

    threading.Thread._bootstrap_inner = counted  # type: ignore[attr-defined]
    gc.callbacks.append(on_gc)
    for warm in (adapter.instrument, adapter.uninstrument):
        warm()
        bench.test()
    pipetrace.force_flush(30)
    total: dict[str, dict[str, float]] = {"on": collections.defaultdict(float), "off": collections.defaultdict(float)}

    def one(mode: str, _round: int) -> None:
        (adapter.instrument if mode == "on" else adapter.uninstrument)()
        gc.collect()
        gc.freeze()
        before = snapshot()
        bench.test()
        pipetrace.force_flush(30)
        gc.collect()
        after = snapshot()
        gc.unfreeze()
        for key, value in after.items():
            total[mode][key] += value - before.get(key, 0.0)

    _, loads = paired_rounds(("off", "on"), rounds, one)
    adapter.instrument()
    gc.callbacks.remove(on_gc)
    threading.Thread._bootstrap_inner = boot  # type: ignore[attr-defined]
    print(f"CPU by thread, {rounds} paired rounds, load {loads[0]} … {loads[-1]}: untraced, traced (ms a run), "
          "traced − untraced (µs a task)")
    for key in sorted(total["on"], key=lambda k: -abs(total["on"][k] - total["off"][k])):
        off, on = total["off"][key] / rounds, total["on"][key] / rounds
        if key == "(GC collections)":
            print(f"  {key:52s} {off:9.1f} {on:9.1f} {on - off:+9.1f} a run")
        else:
            print(f"  {key:52s} {off * 1e3:9.1f} {on * 1e3:9.1f} {(on - off) / TASKS * 1e6:+9.0f}")


class CallCounter:
    """Python function calls per thread kind (threads' names, digits dropped), counted only while ``on``;
    installed before pipetrace starts its export threads, so that every thread of the process is counted."""

    def __init__(self) -> None:
        import collections
        import re

        self.on = False
        self.calls: collections.Counter[str] = collections.Counter()
        self._kind = threading.local()
        self._digits = re.compile(r"[-_ ]?\d+")
        threading.setprofile(self.event)
        sys.setprofile(self.event)

    def event(self, _frame: Any, event: str, _arg: Any) -> None:
        if self.on and event == "call":
            kind = getattr(self._kind, "name", None)
            if kind is None:
                kind = self._kind.name = self._digits.sub("#", threading.current_thread().name)
            self.calls[kind] += 1


def calls(bench: Any, counter: CallCounter) -> None:
    """See the module doc: the Python calls each thread makes in a traced and an untraced run (deterministic,
    so not moved by the machine's load; a call of pipetrace's hooks costs about what one of Airflow's does)."""
    import pipetrace
    from pipetrace.integrations import airflow as adapter

    counted = {}
    for mode in ("on", "off"):
        (adapter.instrument if mode == "on" else adapter.uninstrument)()
        bench.test()  # warm: first-use costs of the mode
        pipetrace.force_flush(30)
        counter.calls.clear()
        counter.on = True
        bench.test()
        pipetrace.force_flush(30)
        counter.on = False
        counted[mode] = dict(counter.calls)
    adapter.instrument()
    print("Python calls by thread, one run each: untraced, traced, traced − untraced (a run, a task)")
    for kind in sorted(set(counted["on"]) | set(counted["off"]), key=lambda k: -counted["on"].get(k, 0)):
        off, on = counted["off"].get(kind, 0), counted["on"].get(kind, 0)
        print(f"  {kind:40s} {off:10d} {on:10d} {on - off:+8d} {(on - off) / TASKS:+7.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--exporters", default="store,otlp")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--gc", choices=("freeze", "auto"), default="freeze",
                        help="auto: leave the cyclic GC alone (as before; wider spread), see the module doc")
    parser.add_argument("--hooks", type=int, default=0, metavar="N",
                        help="measure the adapter's own work over N traced runs instead (see the module doc)")
    parser.add_argument("--threads", type=int, default=0, metavar="N",
                        help="the CPU of each thread and of the GC, N paired rounds (see the module doc)")
    parser.add_argument("--calls", action="store_true", help="the Python calls of each thread (see the module doc)")
    args = parser.parse_args()
    counter = CallCounter() if args.calls else None  # before any thread starts
    home = Path(tempfile.mkdtemp(prefix="pt-bench-airflow-"))
    _setup(home)
    from airflow.utils import db

    db.initdb()
    import pipetrace
    from pipetrace.integrations import airflow as adapter

    with SpanCounter() as receiver:
        pipetrace.configure(exporters=args.exporters, otlp_endpoint=receiver.endpoint)
        bench = _dag(home)
        if args.hooks:
            hooks(bench, args.hooks, receiver)
            return 0
        if args.threads:
            threads(bench, args.threads, receiver)
            return 0
        if counter is not None:
            calls(bench, counter)
            return 0
        for warm in (adapter.instrument, adapter.uninstrument):  # warm-up: imports, DAG sync, first-use costs
            warm()
            bench.test()
        pipetrace.force_flush(30)
        spans: list[int] = []

        def one(mode: str, _round: int) -> tuple[float, float, float]:
            (adapter.instrument if mode == "on" else adapter.uninstrument)()
            if args.gc == "freeze":  # every run starts from the same heap; its own garbage is its own (doc)
                gc.collect()
                gc.freeze()
            before, received = receiver.spans, receiver.cpu_s
            start, cpu, thread = time.perf_counter(), _cpu(), time.thread_time()
            dr = bench.test()
            wall = time.perf_counter() - start
            pipetrace.force_flush(30)  # the traced run's export work belongs to it
            if args.gc == "freeze":
                gc.collect()  # what the run left (only objects made since the freeze are scanned)
            thread = time.thread_time() - thread
            cpu = _cpu() - cpu - (receiver.cpu_s - received)  # the collector's side is not the run's
            gc.unfreeze()
            assert str(getattr(dr.state, "value", dr.state)) == "success"
            if mode == "on":
                spans.append(receiver.spans - before)
            return wall, cpu, thread

        runs, loads = paired_rounds(("off", "on"), args.rounds, one)
        adapter.instrument()
    report_on_off(runs, loads, spans, args, name="Airflow 50-task `dag.test()`", script="airflow_overhead.py",
                  title=f"airflow dag.test() of a {TASKS}-task DAG, {args.rounds} paired rounds (alternating order)",
                  per=TASKS, unit="task", goal=1.03, before=(BEFORE, "not measured"),
                  labels=("wall", "CPU", "run-thread CPU"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
