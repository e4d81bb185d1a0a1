"""Cost of the default redaction per span: span end → exported to the store, redaction on vs off.

"off" still applies the attribute length limit (8 KiB by default), which is not redaction.

Each round emits N task spans with 15 attributes (pipetrace's own plus typical user ones; a new run id
every span, so the value cache does not hide the scan) and waits until the store has them. Rounds
alternate on/off in one process and the medians are compared. Goal: ratio ≤ 1.3.

    python benchmarks/redaction_overhead.py [--spans 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pipetrace

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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        _round(home / "warm", 500, True, "warm")
        _round(home / "warm", 500, False, "warm2")
        on: list[tuple[float, float]] = []
        off: list[tuple[float, float]] = []
        for r in range(args.rounds):
            off.append(_round(home / f"off{r}", args.spans, False, f"off{r}"))
            on.append(_round(home / f"on{r}", args.spans, True, f"on{r}"))
        pipetrace.shutdown(5)
    print(f"span end-to-export (store), {args.spans} spans x {args.rounds} rounds, 15 attributes per span")
    for label, index in (("wall", 0), ("cpu ", 1)):
        m_off = statistics.median(x[index] for x in off)
        m_on = statistics.median(x[index] for x in on)
        ratios = sorted(b[index] / a[index] for a, b in zip(off, on, strict=True))  # paired rounds
        print(f"  {label}  off {m_off:7.1f} µs/span   on {m_on:7.1f} µs/span   "
              f"cost {m_on - m_off:6.1f} µs/span   ratio {m_on / m_off:.2f}x (goal <= 1.3x)   "
              f"paired ratios min/median/max {ratios[0]:.2f}/{statistics.median(ratios):.2f}/{ratios[-1]:.2f}")
    print(f"  redaction transform alone: {_transform_only(args.spans):.1f} µs/span (cpu)")


if __name__ == "__main__":
    main()
