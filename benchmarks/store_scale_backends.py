"""SQLite vs PostgreSQL side by side (``store_scale.py --backend postgresql`` runs this).

Two phases, both backends in one run, 4 writer processes each with its own share of the runs:

1. **Bulk load** (the history, everything but the newest runs): the fastest honest path, the store's own
   writer (``Backend.write_spans``) with 5,000-row batches, rows made by ``pipetrace.analysis.synthetic``;
   each batch goes to both backends, alternating which goes first. Its rate is printed, not a goal.
2. **Ingest on the deployed path** (the newest ``--ingest-spans`` spans): SDK ``ReadableSpan`` objects
   (built before the clock starts) through ``StoreSpanExporter.export`` in batches of 512 (the export
   queue's default ``max_export_batch_size``), so the Python encoding from ``ReadableSpan`` is timed, and
   on PostgreSQL the local-buffer writer too. Interleaved paired rounds, the backend order alternating.

Then the CLI/UI/analysis queries run on both stores, paired per sample. Before them PostgreSQL gets
``VACUUM ANALYZE`` (what autovacuum does to a table that was just filled; it sets the visibility map the
index-only scans need). Prints min/median/max per backend, the PostgreSQL/SQLite ratio of medians, the
load average, and the disk per span.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from pipetrace.analysis.stats import task_percentiles
from pipetrace.analysis.synthetic import HOUR_NS, HistorySpec, generate
from pipetrace.store import SpanRecord, SpanStore, StoreSpanExporter
from pipetrace.store import maintenance as M
from pipetrace.store.sqlite import _row

WRITERS = 4
ROUNDS = 3
BULK_BATCH = 5000
EXPORT_BATCH = 512
SPANS_PER_RUN = 51
PIPELINES = 5  # per writer


def open_store(kind: str, where: str) -> SpanStore:
    if kind == "sqlite":
        return SpanStore.local(Path(where))
    from pipetrace.store.postgres import PostgresBackend
    from pipetrace.store.target import parse

    return SpanStore(Path(where.split("|")[1]) / "traces.db", backend=PostgresBackend(parse(where.split("|")[0])))


def _readable(rec: SpanRecord, resource: Resource, scope: InstrumentationScope) -> ReadableSpan:
    trace = int(rec.trace_id, 16)
    parent = SpanContext(trace, int(rec.parent_span_id, 16), False, TraceFlags(1)) if rec.parent_span_id else None
    return ReadableSpan(name=rec.name, context=SpanContext(trace, int(rec.span_id, 16), False, TraceFlags(1)),
                        parent=parent, resource=resource, attributes=rec.attributes, kind=SpanKind[rec.kind],
                        status=Status(StatusCode[rec.status]), start_time=rec.start_ns, end_time=rec.end_ns,
                        instrumentation_scope=scope)


def _history(k: int, runs_per_pipeline: int, now: int) -> Iterator[tuple[Any, set[str]]]:
    return generate(HistorySpec(pipelines=PIPELINES, runs_per_pipeline=runs_per_pipeline, tasks=10,
                                batches_per_task=4, start_ns=now - runs_per_pipeline * HOUR_NS,
                                seasonal_pipelines=1, seed=7 + k, system=f"bench{k}"))


def writer(k: int, runs_per_pipeline: int, newest: int, now: int, targets: dict[str, str], conn: Any) -> None:
    """One writer process. ``bulk``: writes its older runs to both stores; ``export``: round r of its
    newest ``newest`` runs per pipeline through a store exporter."""
    stores = {kind: open_store(kind, where) for kind, where in targets.items()}
    for store in stores.values():
        store.count()  # connect and migrate before any clock starts
    resource = Resource({"service.name": "synthetic", "host.name": f"writer-{k}"})
    scope = InstrumentationScope("pipetrace")
    rounds: list[list[ReadableSpan]] = [[] for _ in range(ROUNDS)]
    trace_ids: list[str] = []
    bulk_s = {kind: 0.0 for kind in stores}
    bulk_n, flip = 0, 0
    pending: list[tuple[Any, ...]] = []

    def flush_bulk() -> None:
        nonlocal flip
        order = list(stores) if flip % 2 == 0 else list(stores)[::-1]
        flip += 1
        for kind in order:
            t = time.perf_counter()
            stores[kind].backend.write_spans(pending)
            bulk_s[kind] += time.perf_counter() - t

    conn.recv()  # "bulk"
    for i, (run, _slow) in enumerate(_history(k, runs_per_pipeline, now)):
        trace_ids.append(run.trace_id)
        if i % runs_per_pipeline >= runs_per_pipeline - newest:
            rounds[i % ROUNDS].extend(_readable(s, resource, scope) for s in run.spans)
            continue
        pending.extend(_row(s) for s in run.spans)
        if len(pending) >= BULK_BATCH:
            flush_bulk()
            bulk_n += len(pending)
            pending = []
    if pending:
        flush_bulk()
        bulk_n += len(pending)
    for spans in rounds:
        spans.sort(key=lambda s: s.end_time or 0)  # the order an export queue sees them: as they end
    conn.send(("bulk", bulk_n, bulk_s, trace_ids))
    exporters = {kind: StoreSpanExporter(store) for kind, store in stores.items()}
    while True:
        msg = conn.recv()
        if msg is None:
            break
        kind, r = msg
        spans = rounds[r]
        t = time.perf_counter()
        for i in range(0, len(spans), EXPORT_BATCH):
            exporters[kind].export(spans[i:i + EXPORT_BATCH])
        conn.send(("done", len(spans), time.perf_counter() - t))
    for exporter in exporters.values():
        exporter.shutdown()


def _mmm(values: list[float], fmt: str) -> str:
    return f"{fmt.format(min(values))} / {fmt.format(statistics.median(values))} / {fmt.format(max(values))}"


def _paired(stores: dict[str, SpanStore], fn: Callable[[SpanStore, int], Any], n: int) -> dict[str, list[float]]:
    """``fn`` timed on both backends, alternating which goes first, ``n`` pairs (ms)."""
    out: dict[str, list[float]] = {k: [] for k in stores}
    kinds = list(stores)
    for i in range(n):
        for kind in (kinds if i % 2 == 0 else kinds[::-1]):
            t = time.perf_counter()
            fn(stores[kind], i)
            out[kind].append((time.perf_counter() - t) * 1000)
    return out


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def run(spans: int, work: Path, pg_url: str, keep: bool, ingest_spans: int = 300_000,
        backends: tuple[str, ...] = ("sqlite", "postgresql")) -> None:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    every = {"sqlite": str(work / "traces.db"), "postgresql": f"{pg_url}?schema={schema}|{work}"}
    targets = {kind: every[kind] for kind in backends}
    for suffix in ("", "-wal", "-shm"):
        Path(f"{every['sqlite']}{suffix}").unlink(missing_ok=True)
    runs_per_pipeline = max(ROUNDS, round(spans / SPANS_PER_RUN / PIPELINES / WRITERS))
    newest = min(runs_per_pipeline, max(ROUNDS, round(ingest_spans / SPANS_PER_RUN / PIPELINES / WRITERS)))
    total = runs_per_pipeline * PIPELINES * WRITERS * SPANS_PER_RUN
    exported = newest * PIPELINES * WRITERS * SPANS_PER_RUN
    print(f"{WRITERS} writer processes, {total:,} spans ({runs_per_pipeline * PIPELINES * WRITERS:,} runs × "
          f"{SPANS_PER_RUN}, one run per pipeline an hour) into {' and '.join(targets)} (SQLite {every['sqlite']}, "
          f"PostgreSQL {pg_url} schema {schema}); the newest {exported:,} through the store exporter", flush=True)
    now = time.time_ns()
    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    for k in range(WRITERS):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=writer, args=(k, runs_per_pipeline, newest, now, targets, child))
        p.start()
        pipes.append(parent)
        procs.append(p)
    t = time.perf_counter()
    for pipe in pipes:
        pipe.send("bulk")
    trace_ids: list[str] = []
    bulk_rows, bulk_s = 0, {kind: 0.0 for kind in targets}
    for pipe in pipes:
        _tag, n, seconds, ids = pipe.recv()
        bulk_rows += n
        trace_ids.extend(ids)
        for kind in bulk_s:
            bulk_s[kind] += seconds[kind]
    print(f"bulk load: {bulk_rows:,} spans to each backend in {time.perf_counter() - t:,.0f} s wall (generation "
          f"included); write time summed over writers, and the rate with {WRITERS} writers: "
          + ", ".join(f"{kind} {bulk_s[kind]:,.0f} s -> {WRITERS * bulk_rows / bulk_s[kind]:,.0f} spans/s"
                      for kind in targets) + f"; load {_load()}", flush=True)

    rates: dict[str, list[float]] = {kind: [] for kind in targets}
    loads: list[str] = []
    for r in range(ROUNDS):
        for kind in (list(targets) if r % 2 == 0 else list(targets)[::-1]):
            t = time.perf_counter()
            for pipe in pipes:
                pipe.send((kind, r))
            n = sum(pipe.recv()[1] for pipe in pipes)
            rates[kind].append(n / (time.perf_counter() - t))
            print(f"  round {r + 1} {kind:<10} {rates[kind][-1]:>10,.0f} spans/s  ({n:,} spans, load {_load()})",
                  flush=True)
        loads.append(_load())
    for pipe in pipes:
        pipe.send(None)
    for p in procs:
        p.join()

    stores = {kind: open_store(kind, where) for kind, where in targets.items()}
    counts = {k: s.count() for k, s in stores.items()}
    assert set(counts.values()) == {total}, counts
    if "postgresql" in stores:
        t = time.perf_counter()
        stores["postgresql"].backend.run(lambda c: c.execute("VACUUM ANALYZE spans, span_traces, span_runs"))
        print(f"PostgreSQL VACUUM ANALYZE: {time.perf_counter() - t:,.0f} s", flush=True)
    rows: list[tuple[str, dict[str, list[float]], str, str]] = []
    rows.append((f"ingest, exporter, {WRITERS} writers (spans/s)", rates, "{:,.0f}", "≥ 30,000 (PostgreSQL)"))
    rng = random.Random(1)
    sample = rng.sample(trace_ids, 200)

    def one_trace(store: SpanStore, i: int) -> None:
        assert len(store.trace(sample[i])) == SPANS_PER_RUN

    rows.append(("one trace, 51 spans (ms)", _paired(stores, one_trace, 200), "{:.2f}", "< 20 ms"))
    rows.append(("one trace by run id (ms)", _paired(stores, lambda s, i: s.trace(f"run-{i:06d}"), 50), "{:.2f}",
                 "< 20 ms"))
    rows.append(("runs page, newest 50 (ms)", _paired(stores, lambda s, i: s.runs(limit=50), 10), "{:.0f}",
                 "< 200 ms"))
    for store in stores.values():
        M.ensure_schema(store)  # SQLite's covering duration index, built once (PostgreSQL has it from the start)
    rows.append(("per-task p95 over all runs (ms)", _paired(stores, lambda s, i: task_percentiles(s), 4), "{:.0f}",
                 "< 2 s"))
    loads.append(_load())
    for store in stores.values():
        store.close()
    disk = {kind: M.file_bytes(store) / total for kind, store in stores.items()}
    both = len(stores) == 2

    print(f"\nfigures min / median / max; ratio = PostgreSQL median / SQLite median ({ROUNDS} ingest rounds); "
          f"{total:,} spans; load (1/5/15 min) per round: {', '.join(loads)}")
    print(f"{'':38} " + " ".join(f"{kind:>28}" for kind in stores) + (f" {'ratio':>7}" if both else "") + "  goal")
    for name, values, fmt, goal in rows:
        med = {kind: statistics.median(v) for kind, v in values.items()}
        ratio = f" {med['postgresql'] / med['sqlite']:>6.2f}x" if both else ""
        print(f"{name:38} " + " ".join(f"{_mmm(values[kind], fmt):>28}" for kind in stores) + f"{ratio}  {goal}")
    ratio = f" {disk['postgresql'] / disk['sqlite']:>6.2f}x" if both else ""
    print(f"{'disk per span (bytes, with indexes)':38} " + " ".join(f"{disk[kind]:>28,.0f}" for kind in stores) + ratio)
    if not keep and "postgresql" in stores:
        import psycopg

        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    if not keep:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{every['sqlite']}{suffix}").unlink(missing_ok=True)
