"""The store thread's cost of writing a run's spans: thread CPU per span of ``StoreSpanExporter.export``.

The deployed case the Dagster and Prefect benchmarks exercise: the store exporter the settings build
(``processing.export.build_queues``, exporters=store), a long-lived SQLite store that already holds
``--runs`` runs, and a commit per run (a flush per run), of real SDK spans (``BoundedAttributes``, made
by an SDK tracer) in the adapters' shapes: a Dagster 30-op run (30 step spans with a ``result`` link
each, then the run span) or a Prefect 50-task flow (task spans with two state events each, a batch
span and the run span). Thread CPU of the exporting thread, so a loaded machine barely moves it; the
total over ``--measured`` runs divided by their spans (the WAL checkpoints every ~15 commits are part
of the cost), and the median commit alongside.

``--before <checkout>`` runs the same measure with that checkout's ``.venvs/<env>`` (its pipetrace), in
interleaved rounds, each round in fresh processes and a fresh store: a paired before/after.

    python benchmarks/store_scale_runs.py [--system dagster] [--runs 1000] [--measured 300] [--rounds 5]
        [--before <checkout>] [--postgresql postgresql://postgres@127.0.0.1:5432/postgres]

``--postgresql URL``: the same through a PostgreSQL store (a schema of its own per process, dropped after).

``--paced SECONDS``: the export queue as deployed decides when to commit, not a flush per run: each run's
spans end spread over SECONDS (the run span last, as the adapters end it), through the processor the
settings build (store only, pipetrace's defaults for the queue's wait), back to back, with no flush until
the last run. Reports the commits per run and the store thread's CPU per span (``--measured`` runs: keep it
small, 20 runs of 1.2 s take 24 s a process).
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
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import fmt_spread, load_range, paired_ratios, paired_rounds  # noqa: E402


def _tracer() -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource({"service.name": "bench-worker", "service.instance.id": str(uuid.uuid4()),
                         "host.name": "vm", "process.pid": os.getpid()})
    return TracerProvider(resource=resource).get_tracer("pipetrace")


def dagster_run(tracer: Any) -> list[Any]:
    """A 30-op run as the Dagster adapter records it: step spans linked to the step before, the run span."""
    from opentelemetry.trace import Link, SpanKind, set_span_in_context

    job, run_id, now = "bench_30_ops", str(uuid.uuid4()), time.time_ns()
    base = {"pipetrace.system": "dagster", "cicd.pipeline.name": job, "cicd.pipeline.run.id": run_id}
    run = tracer.start_span(f"run {job}", kind=SpanKind.SERVER, start_time=now,
                            attributes={**base, "dagster.job": job, "dagster.run_id": run_id})
    parent = set_span_in_context(run)
    out, previous = [], None
    for n, step in enumerate(["source", *(f"stage_{i:02d}" for i in range(1, 29)), "sink"]):
        links: list[Link] = []
        if previous is not None:
            links.append(Link(previous.get_span_context(), {"pipetrace.link.kind": "result", "dagster.input": "value",
                                                            "dagster.output": "result"}))
        start = now + n * 3_000_000
        previous = tracer.start_span(f"task {step}", context=parent, start_time=start, links=links, attributes={
            **base, "cicd.pipeline.task.name": step, "pipetrace.task.try_number": 1,
            "cicd.pipeline.task.run.id": f"{run_id}/{step}#1", "dagster.step_key": step, "dagster.op": step})
        previous.set_attribute("cicd.pipeline.task.run.result", "success")
        previous.end(start + 2_000_000)
        out.append(previous)
    run.set_attribute("cicd.pipeline.result", "success")
    run.end(now + 95_000_000)
    return [*out, run]


def prefect_run(tracer: Any, tasks: int = 50) -> list[Any]:
    """A 50-task flow as the Prefect adapter records it: task spans with state events, a batch span, the run."""
    from opentelemetry.trace import SpanKind, set_span_in_context

    flow, run_id, now = "bench_prefect", str(uuid.uuid4()), time.time_ns()
    base = {"pipetrace.system": "prefect", "cicd.pipeline.name": flow, "cicd.pipeline.run.id": run_id}
    run = tracer.start_span(f"run {flow}", kind=SpanKind.SERVER, start_time=now, attributes={
        "prefect.run.name": "keen-baboon", "prefect.run.type": "flow", "prefect.run.id": run_id, **base})
    batch = tracer.start_span("batch work", context=set_span_in_context(run), start_time=now, attributes={
        **base, "cicd.pipeline.task.name": "work", "pipetrace.batch.size": tasks // 2, "pipetrace.batch.index": 0})
    out = []
    for n in range(tasks):
        name, task_id, start = ("work", "collect")[n == tasks - 1], str(uuid.uuid4()), now + n * 2_000_000
        attrs: dict[str, Any] = {"prefect.run.name": f"{name}-{random.randrange(1000)}", "prefect.run.type": "task",
                                 "prefect.run.id": task_id, "prefect.run.parameter.i": "int", **base,
                                 "cicd.pipeline.task.name": name, "cicd.pipeline.task.run.id": task_id,
                                 "pipetrace.task.try_number": 1, "pipetrace.task.queued_ms": round(random.random(), 3)}
        if n < tasks // 2:
            attrs["pipetrace.task.map_index"] = n
        span = tracer.start_span(f"task {name}", context=set_span_in_context(batch if n < tasks // 2 else run),
                                 start_time=start, attributes=attrs)
        for k, state in enumerate(("RUNNING", "COMPLETED")):
            span.add_event(state.title(), {"prefect.state.message": "", "prefect.state.type": state,
                                           "prefect.state.name": state.title(), "prefect.state.id": str(uuid.uuid4())},
                           start + k * 1_000_000)
        span.set_attribute("cicd.pipeline.task.run.result", "success")
        span.end(start + 1_500_000)
        out.append(span)
    batch.end(now + 60_000_000)
    run.set_attribute("cicd.pipeline.result", "success")
    run.end(now + 110_000_000)
    return [*out, batch, run]


RUNS = {"dagster": dagster_run, "prefect": prefect_run}


def measure(system: str, runs: int, measured: int) -> dict[str, float]:
    """Thread CPU µs per span of the store exporter's ``export``, one call per run, on a store of ``runs`` runs."""
    from pipetrace.config import Settings
    from pipetrace.processing.export import build_queues

    tracer = _tracer()
    make = RUNS[system]
    home = Path(tempfile.mkdtemp(prefix="pipetrace-bench-store-runs-"))
    [queue] = build_queues(Settings(home=home, exporters=("store",)))
    exporter = queue.exporter
    for _ in range(runs):
        exporter.export(make(tracer))
    batches = [make(tracer) for _ in range(measured)]  # made before: only the store's work is timed
    per_commit, total, spans = [], 0, 0
    for batch in batches:
        start = time.thread_time_ns()
        assert exporter.export(batch).name == "SUCCESS"
        took = time.thread_time_ns() - start
        per_commit.append(took / len(batch) / 1000)
        total += took
        spans += len(batch)
    exporter.shutdown()  # the last connection closed: the WAL is checkpointed into the file
    out = {"per span (all commits)": total / spans / 1000, "median commit, per span": statistics.median(per_commit)}
    if exporter.store.dialect == "sqlite":
        size = sum(os.path.getsize(p) for p in home.glob("traces.db*"))
        out["store bytes per span"] = size / ((runs + measured) * len(batches[0]))
    return out


def measure_paced(system: str, runs: int, measured: int, seconds: float) -> dict[str, float]:
    """Commits per run and store-thread CPU µs per span when the queue's own policy decides the commits."""
    import threading

    from pipetrace.config import load
    from pipetrace.processing.export import build_queues
    from pipetrace.processing.processors import PipelineProcessor

    tracer = _tracer()
    make = RUNS[system]
    home = Path(tempfile.mkdtemp(prefix="pipetrace-bench-store-paced-"))
    [queue] = build_queues(load(home=home, exporters="store"))  # the environment's PIPETRACE_* as deployed
    processor = PipelineProcessor([queue])
    exporter = queue.exporter
    for _ in range(runs):
        exporter.export(make(tracer))
    commits = [0]
    export = exporter.export

    def counted(spans: Any) -> Any:
        commits[0] += 1
        return export(spans)

    exporter.export = counted  # type: ignore[method-assign]
    batches = [make(tracer) for _ in range(measured + 1)]
    for span in batches[0]:  # warm-up: the thread started, its connection open
        processor.on_end(span)
    processor.force_flush()
    [thread] = [t for t in threading.enumerate() if t.name == "pipetrace-export-store"]
    assert thread.ident is not None
    clock = time.pthread_getcpuclockid(thread.ident)
    commits[0], cpu_before, spans = 0, time.clock_gettime_ns(clock), 0
    for batch in batches[1:]:
        gap = seconds / len(batch)
        for span in batch:
            time.sleep(gap)
            processor.on_end(span)
        spans += len(batch)
    processor.force_flush()
    cpu = time.clock_gettime_ns(clock) - cpu_before
    processor.shutdown()
    return {"commits per run": commits[0] / measured, "per span (all commits)": cpu / spans / 1000,
            "spans per commit": spans / max(1, commits[0])}


def run_in(python: Path, args: argparse.Namespace) -> dict[str, float]:
    env = dict(os.environ)
    schema = f"bench_runs_{uuid.uuid4().hex[:8]}"
    if args.postgresql:  # the store exporter then writes to this server (its own schema, dropped after)
        env["PIPETRACE_STORE"] = f"{args.postgresql}?schema={schema}"
    try:
        paced = ["--paced", str(args.paced)] if args.paced else []
        out = subprocess.run([str(python), __file__, "--child", "--system", args.system, "--runs", str(args.runs),
                              "--measured", str(args.measured), *paced], env=env, check=True, capture_output=True,
                             text=True).stdout
    finally:
        if args.postgresql:
            import psycopg

            with psycopg.connect(args.postgresql, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--system", choices=sorted(RUNS), default="dagster")
    ap.add_argument("--runs", type=int, default=1000, help="runs in the store before the measured ones")
    ap.add_argument("--measured", type=int, default=300, help="runs written (one export each) and timed")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--before", type=Path, help="another checkout (with .venvs/<env>) measured as 'before'")
    ap.add_argument("--env", default="core")
    ap.add_argument("--postgresql", metavar="URL", help="write to this PostgreSQL server instead (thread CPU of "
                    "the exporting process only: the server's own work is not counted)")
    ap.add_argument("--paced", type=float, metavar="SECONDS", help="each run's spans end over SECONDS and the "
                    "queue's policy decides the commits (commits per run); no flush per run")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.paced:
            print(json.dumps(measure_paced(args.system, args.runs, args.measured, args.paced)))
            return
        print(json.dumps(measure(args.system, args.runs, args.measured)))
        return
    pythons = {"after": Path(sys.executable)}
    if args.before is not None:
        pythons = {"before": args.before.resolve() / ".venvs" / args.env / "bin" / "python", **pythons}
    runs, loads = paired_rounds(tuple(pythons), args.rounds, lambda mode, _r: run_in(pythons[mode], args))
    policy = f"each run's spans over {args.paced} s, the queue's policy" if args.paced else "a commit per run"
    print(f"store exporter, {args.system} runs: thread CPU µs per span, {policy}, {args.measured} runs "
          f"timed on a store of {args.runs}; {args.rounds} interleaved rounds, median (min, max); "
          f"load {load_range(loads)}")
    for name in runs["after"][0]:
        cells = "  ".join(f"{mode} {fmt_spread([r[name] for r in rs], '.1f')}" for mode, rs in runs.items())
        line = f"  {name:26s} {cells}"
        if "before" in runs:
            ratios = paired_ratios([r[name] for r in runs["after"]], [r[name] for r in runs["before"]])
            line += f"  after/before {fmt_spread(ratios)}"
        print(line)


if __name__ == "__main__":
    main()
