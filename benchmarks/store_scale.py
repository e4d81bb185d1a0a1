"""Store at scale: 1,000,000 spans (~20,000 runs) → ingest rate, one-trace fetch, per-task p95,
anomalies, audit, size on disk. Prints every figure next to its goal.

    .venvs/core/bin/python benchmarks/store_scale.py [--spans 1000000] [--dir DIR] [--keep]
    .venvs/core/bin/python benchmarks/store_scale.py --backend postgresql [--spans N] [--ingest-spans N]
        [--pg-url URL]   (SQLite and PostgreSQL side by side, 4 writer processes, the newest spans through
        the store exporter from ReadableSpans: see store_scale_backends.py)

Runs are synthetic (pipetrace.analysis.synthetic): 20 pipelines, 10 tasks per run, 4 batch spans per
task (51 spans per run), hourly, ending now; 2 % of task spans made slow on purpose.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from pipetrace.analysis.anomalies import detect
from pipetrace.analysis.audit import audit
from pipetrace.analysis.stats import task_percentiles
from pipetrace.analysis.synthetic import HOUR_NS, HistorySpec, generate
from pipetrace.store import SpanStore
from pipetrace.store import maintenance as M

SPANS_PER_RUN = 51


def fmt_rate(n: float) -> str:
    return f"{n:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spans", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=None, help="where to build the store (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the store afterwards")
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite",
                    help="postgresql: compare it with SQLite side by side in one run")
    ap.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--ingest-spans", type=int, default=300_000,
                    help="with --backend postgresql: the newest spans, written through the store exporter")
    ap.add_argument("--postgresql-only", action="store_true",
                    help="with --backend postgresql: leave SQLite out (a size SQLite cannot be loaded to in time)")
    args = ap.parse_args()
    if args.backend == "postgresql":
        import sys

        sys.path.insert(0, str(Path(__file__).parent))
        from store_scale_backends import run

        work = args.dir or Path(tempfile.mkdtemp(prefix="pipetrace-bench-"))
        work.mkdir(parents=True, exist_ok=True)
        run(args.spans, work, args.pg_url, args.keep, args.ingest_spans,
            ("postgresql",) if args.postgresql_only else ("sqlite", "postgresql"))
        if not args.keep and args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
        return
    pipelines = 20
    runs_per_pipeline = max(1, round(args.spans / SPANS_PER_RUN / pipelines))
    work = args.dir or Path(tempfile.mkdtemp(prefix="pipetrace-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "traces.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    store = SpanStore(db)
    now = time.time_ns()
    spec = HistorySpec(pipelines=pipelines, runs_per_pipeline=runs_per_pipeline, tasks=10, batches_per_task=4,
                       start_ns=now - runs_per_pipeline * HOUR_NS, seasonal_pipelines=2)
    print(f"store: {db}")
    print(f"building {pipelines * runs_per_pipeline:,} runs × {SPANS_PER_RUN} spans "
          f"≈ {pipelines * runs_per_pipeline * SPANS_PER_RUN:,} spans")

    # ---- ingest: generation is not timed, only SpanStore.write of 5,000-span batches ----
    t_all = time.perf_counter()
    write_s, write_cpu, written, batch, trace_ids = 0.0, 0.0, 0, [], []
    for history_run, _slow in generate(spec):
        batch.extend(history_run.spans)
        trace_ids.append(history_run.trace_id)
        if len(batch) >= 5000:
            t, c = time.perf_counter(), time.process_time()
            written += store.write(batch)
            write_s += time.perf_counter() - t
            write_cpu += time.process_time() - c
            batch = []
    if batch:
        t = time.perf_counter()
        written += store.write(batch)
        write_s += time.perf_counter() - t
    ingest_rate = written / write_s
    print(f"\ngenerated + ingested in {time.perf_counter() - t_all:.1f}s")

    results: list[tuple[str, str, str]] = []
    results.append(("spans stored", f"{store.count():,}", ""))
    results.append(("ingest (SpanStore.write, 5k batches)", f"{fmt_rate(ingest_rate)} spans/s",
                    f"≥ 30,000 spans/s  (CPU-time rate {fmt_rate(written / max(write_cpu, 1e-9))}/s)"))

    # ---- one trace ----
    rng = random.Random(1)
    sample = rng.sample(trace_ids, 200)
    timings = []
    for trace_id in sample:
        t = time.perf_counter()
        spans = store.trace(trace_id)
        timings.append((time.perf_counter() - t) * 1000)
        assert len(spans) == SPANS_PER_RUN
    results.append(("fetch one trace (51 spans), median / p95 of 200",
                    f"{statistics.median(timings):.2f} / {sorted(timings)[189]:.2f} ms", "< 20 ms"))
    by_run_id = []
    for _ in range(50):
        t = time.perf_counter()
        store.trace(f"run-{rng.randrange(runs_per_pipeline):06d}")
        by_run_id.append((time.perf_counter() - t) * 1000)
    results.append(("fetch one trace by run id, median", f"{statistics.median(by_run_id):.2f} ms", "< 20 ms"))

    # ---- per-task p95 ----
    t = time.perf_counter()
    M.ensure_schema(store)
    index_s = time.perf_counter() - t
    results.append(("build covering duration index (once)", f"{index_s:.2f} s", ""))
    t, c = time.perf_counter(), time.process_time()
    stats = task_percentiles(store)
    p95_s = time.perf_counter() - t
    results.append((f"per-task p95 over all runs ({len(stats)} tasks, analysis.stats)", f"{p95_s:.2f} s",
                    f"< 1 s  (CPU {time.process_time() - c:.2f} s)"))
    t = time.perf_counter()
    core_stats = store.task_stats(last=10**9)
    results.append((f"per-task p95 via SpanStore.task_stats ({len(core_stats)} tasks)",
                    f"{time.perf_counter() - t:.2f} s", "(core API, for comparison)"))

    # ---- anomalies ----
    t = time.perf_counter()
    found = detect(store, since_ns=now - 24 * HOUR_NS)
    results.append((f"anomalies --since 24h ({len(found)} flagged)", f"{time.perf_counter() - t:.2f} s", ""))
    t = time.perf_counter()
    everything = detect(store, save=False)
    results.append((f"anomalies over all history ({len(everything)} flagged)",
                    f"{time.perf_counter() - t:.2f} s", ""))

    # ---- audit ----
    t = time.perf_counter()
    report = audit(store, sources={})
    results.append((f"audit ({report.traces:,} traces, {len(report.findings)} findings)",
                    f"{time.perf_counter() - t:.2f} s", ""))

    store.close()
    size = sum(Path(f"{db}{s}").stat().st_size for s in ("", "-wal", "-shm") if Path(f"{db}{s}").exists())
    results.append(("size on disk (db + wal)", f"{size / 2**20:,.0f} MiB ({size / written:,.0f} B/span)", ""))

    width = max(len(r[0]) for r in results)
    print("\n(wall-clock figures; the CPU figures show how much of it was this process on a shared machine)")
    for name, value, goal in results:
        print(f"{name:<{width}}  {value:>26}  {goal}")
    if not args.keep and args.dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
