"""SQLite vs PostgreSQL side by side (``store_scale.py --backend postgresql`` runs this).

The same synthetic spans go to both backends from 4 writer processes, in interleaved paired rounds
(the order of the two backends alternates per round); then the CLI/UI/analysis queries run on both,
paired per sample. Prints min/median/max per backend and the PostgreSQL/SQLite ratio of medians.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipetrace.analysis.stats import task_percentiles
from pipetrace.analysis.synthetic import HOUR_NS, HistorySpec, generate
from pipetrace.store import SpanStore
from pipetrace.store import maintenance as M

WRITERS = 4
ROUNDS = 3
BATCH = 5000
SPANS_PER_RUN = 51


def open_store(kind: str, where: str) -> SpanStore:
    if kind == "sqlite":
        return SpanStore.local(Path(where))
    from pipetrace.store.postgres import PostgresBackend
    from pipetrace.store.target import parse

    return SpanStore(Path(where.split("|")[1]) / "traces.db", backend=PostgresBackend(parse(where.split("|")[0])))


def writer(k: int, runs_per_pipeline: int, now: int, targets: dict[str, str], conn: Any) -> None:
    """One writer process: builds its share of runs once, then writes round r to a backend on request."""
    spec = HistorySpec(pipelines=5, runs_per_pipeline=runs_per_pipeline, tasks=10, batches_per_task=4,
                       start_ns=now - runs_per_pipeline * HOUR_NS, seasonal_pipelines=1, seed=7 + k,
                       system=f"bench{k}")
    runs = list(generate(spec))
    rounds: list[list[Any]] = [[] for _ in range(ROUNDS)]
    for i, (run, _slow) in enumerate(runs):
        rounds[i % ROUNDS].extend(run.spans)
    stores = {kind: open_store(kind, where) for kind, where in targets.items()}
    for store in stores.values():
        store.count()  # connect and migrate before the clock starts
    conn.send(("ready", [r.trace_id for r, _ in runs]))
    while True:
        msg = conn.recv()
        if msg is None:
            break
        kind, r = msg
        spans = rounds[r]
        t = time.perf_counter()
        for i in range(0, len(spans), BATCH):
            stores[kind].write(spans[i:i + BATCH])
        conn.send(("done", len(spans), time.perf_counter() - t))
    for store in stores.values():
        store.close()


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


def run(spans: int, work: Path, pg_url: str, keep: bool) -> None:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    targets = {"sqlite": str(work / "traces.db"), "postgresql": f"{pg_url}?schema={schema}|{work}"}
    for suffix in ("", "-wal", "-shm"):
        Path(f"{targets['sqlite']}{suffix}").unlink(missing_ok=True)
    runs_per_pipeline = max(1, round(spans / SPANS_PER_RUN / 5 / WRITERS))
    total = runs_per_pipeline * 5 * WRITERS * SPANS_PER_RUN
    print(f"{WRITERS} writer processes, {total:,} spans ({runs_per_pipeline * 5 * WRITERS:,} runs × {SPANS_PER_RUN})"
          f" into SQLite {targets['sqlite']} and PostgreSQL {pg_url} schema {schema}")
    now = time.time_ns()
    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    for k in range(WRITERS):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=writer, args=(k, runs_per_pipeline, now, targets, child))
        p.start()
        pipes.append(parent)
        procs.append(p)
    trace_ids: list[str] = []
    for pipe in pipes:
        tag, ids = pipe.recv()
        trace_ids.extend(ids)
    rates: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
    for r in range(ROUNDS):
        for kind in (("sqlite", "postgresql") if r % 2 == 0 else ("postgresql", "sqlite")):
            t = time.perf_counter()
            for pipe in pipes:
                pipe.send((kind, r))
            n = sum(pipe.recv()[1] for pipe in pipes)
            rates[kind].append(n / (time.perf_counter() - t))
            print(f"  round {r + 1} {kind:<10} {rates[kind][-1]:>10,.0f} spans/s", flush=True)
    for pipe in pipes:
        pipe.send(None)
    for p in procs:
        p.join()

    stores = {kind: open_store(kind, where) for kind, where in targets.items()}
    rows: list[tuple[str, dict[str, list[float]], str, str]] = []
    rows.append(("ingest, 4 writers (spans/s)", rates, "{:,.0f}", "≥ 30,000 (PostgreSQL)"))
    counts = {k: s.count() for k, s in stores.items()}
    assert counts["sqlite"] == counts["postgresql"] == total, counts
    rng = random.Random(1)
    sample = rng.sample(trace_ids, 200)

    def one_trace(store: SpanStore, i: int) -> None:
        assert len(store.trace(sample[i])) == SPANS_PER_RUN

    rows.append(("one trace, 51 spans (ms)", _paired(stores, one_trace, 200), "{:.2f}", "< 20 ms"))
    rows.append(("runs page, newest 50 (ms)", _paired(stores, lambda s, i: s.runs(limit=50), 10), "{:.0f}",
                 "< 200 ms"))
    for store in stores.values():
        M.ensure_schema(store)  # SQLite's covering duration index, built once (PostgreSQL has it from the start)
    rows.append(("per-task p95 over all runs (ms)", _paired(stores, lambda s, i: task_percentiles(s), 4), "{:.0f}",
                 "< 2 s"))
    for store in stores.values():
        store.close()
    disk = {"sqlite": M.file_bytes(stores["sqlite"]), "postgresql": M.file_bytes(stores["postgresql"])}

    print(f"\nfigures min / median / max; ratio = PostgreSQL median / SQLite median ({ROUNDS} ingest rounds)")
    print(f"{'':34} {'SQLite':>28} {'PostgreSQL':>28} {'ratio':>7}  goal")
    for name, values, fmt, goal in rows:
        ratio = statistics.median(values["postgresql"]) / statistics.median(values["sqlite"])
        print(f"{name:34} {_mmm(values['sqlite'], fmt):>28} {_mmm(values['postgresql'], fmt):>28} "
              f"{ratio:>6.2f}x  {goal}")
    print(f"{'disk per span (bytes, with indexes)':34} {disk['sqlite'] / total:>28,.0f} "
          f"{disk['postgresql'] / total:>28,.0f} {disk['postgresql'] / disk['sqlite']:>6.2f}x")
    if not keep:
        import psycopg

        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{targets['sqlite']}{suffix}").unlink(missing_ok=True)
