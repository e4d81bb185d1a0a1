"""Cost of the default redaction per span: span end → exported to the store, redaction on vs off.

"off" still applies the attribute length limit (8 KiB by default), which is not redaction.

Each round emits N task spans with 15 attributes (pipetrace's own plus typical user ones; a new run id
every span, so the value cache does not hide the scan) and waits until the store has them. Rounds are
paired, on and off in one process, the order rotated each round (``_harness.paired_rounds``); medians,
min/max, the paired ratios and the load are printed. Goal: ratio ≤ 1.3.

    python benchmarks/redaction_overhead.py [--spans 3000] [--rounds 5] [--markdown]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pipetrace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import TABLE_HEADER, fmt_spread, load_range, paired_ratios, paired_rounds, summary_row  # noqa: E402

BEFORE = "1.17 (paired 1.05–1.29; alternating, not rotated)"

USER_ATTRS: dict[str, Any] = {
    "rows": 125_000,
    "bytes.written": 48_211_337,
    "file.name": "orders_2024-06-01.csv",
    "s3.path": "s3://warehouse-raw/orders/dt=2024-06-01/part-00000.snappy.parquet",
    "db.statement": "SELECT id, amount, customer_id FROM orders WHERE created_at > '2024-06-01'",
    "http.url": "https://api.example.com/v2/export?page=2&sort=asc",
    "host.worker": "worker-7.etl.internal",
    "duration.ms": 1234.5,
}


def _round(home: Path, spans: int, redaction: bool, tag: str) -> tuple[float, float]:
    """(wall µs/span, process CPU µs/span) from the first span's start to all spans in the store.

    CPU time counts every thread of this process (the export thread too) and is far less disturbed by
    other processes on a busy machine than wall time."""
    pipetrace.configure(home=home, exporters="store", redaction=redaction, export_interval_s=0.05,
                        max_queue_size=spans * 2)
    start = time.perf_counter()
    cpu = time.process_time()
    for i in range(spans):
        # 7 attributes from pipetrace (system, pipeline, run id, task, try, task run id, result) + 8 user ones
        with pipetrace.task_span("python", "bench_etl", f"{tag}-{i}", "transform", attributes=USER_ATTRS):
            pass
    assert pipetrace.force_flush(120)
    elapsed = time.perf_counter() - start
    cpu_used = time.process_time() - cpu
    stats = pipetrace.stats()["store"]
    assert stats["dropped"] == 0 and stats["failed"] == 0, stats
    return elapsed / spans * 1e6, cpu_used / spans * 1e6


def _transform_only(spans: int) -> float:
    """µs per span of the redaction transform alone, on spans like the ones above."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from pipetrace.redaction import RedactionTransform, Redactor

    resource = Resource.create({"service.name": "bench"})
    batch = [ReadableSpan(name="task transform", resource=resource, attributes={
        **USER_ATTRS, "pipetrace.system": "python", "cicd.pipeline.name": "bench_etl",
        "cicd.pipeline.run.id": f"t-{i}", "cicd.pipeline.task.name": "transform", "pipetrace.task.try_number": 1,
        "cicd.pipeline.task.run.id": f"t-{i}/transform#1", "cicd.pipeline.task.run.result": "success"})
        for i in range(spans)]
    transform = RedactionTransform(Redactor())
    start = time.process_time()
    for span in batch:
        transform(span)
    return (time.process_time() - start) / spans * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        _round(home / "warm", 500, True, "warm")
        _round(home / "warm", 500, False, "warm2")
        runs, loads = paired_rounds(("off", "on"), args.rounds, lambda mode, r: _round(
            home / f"{mode}{r}", args.spans, mode == "on", f"{mode}{r}"))
        pipetrace.shutdown(5)
    print(f"span end-to-export (store), {args.spans} spans x {args.rounds} paired rounds (rotating order), "
          f"15 attributes per span; load {load_range(loads)}")
    rows = []
    for label, index in (("wall", 0), ("CPU", 1)):
        off = [x[index] for x in runs["off"]]
        on = [x[index] for x in runs["on"]]
        ratios = paired_ratios(on, off)
        m_off, m_on = statistics.median(off), statistics.median(on)
        print(f"  {label:4s} off {fmt_spread(off, '.1f')} µs/span   on {fmt_spread(on, '.1f')} µs/span   "
              f"cost {m_on - m_off:6.1f} µs/span   paired ratios {fmt_spread(ratios)} (goal <= 1.3)")
        rows.append(summary_row(f"redaction on / off, {label} per span to the store (`redaction_overhead.py "
                                f"--spans {args.spans} --rounds {args.rounds}`)", BEFORE if label == "CPU" else "1.24",
                                f"**{statistics.median(ratios):.2f}** ({m_on - m_off:.1f} µs)",
                                f"redaction off: {m_off:.1f} µs", f"{min(ratios):.2f}–{max(ratios):.2f}", loads))
    print(f"  redaction transform alone: {_transform_only(args.spans):.1f} µs/span (cpu)")
    if args.markdown:
        print(TABLE_HEADER)
        print("\n".join(rows))


if __name__ == "__main__":
    main()
