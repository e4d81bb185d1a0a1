"""Garbage, oversized and adversarial carriers anywhere a run's context is read: processed normally,
no exception, bounded memory."""

from __future__ import annotations

import random
import tracemalloc

import pipetrace
import pytest
from harness import FaultRow
from pipetrace.carriers import extract, span_context_of, unwrap
from pipetrace.util import ratelimit

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def adversarial(rng: random.Random) -> object:
    choice = rng.randrange(9)
    if choice == 0:
        return {"traceparent": TP, "baggage": ",".join(f"k{i}=v{i}" for i in range(5000))}
    if choice == 1:
        return {"traceparent": TP, "baggage": "k=" + "x" * 200_000}
    if choice == 2:
        return {f"h{i}": "v" * 100 for i in range(5000)} | {"traceparent": TP}
    if choice == 3:
        return {"traceparent": "00-\x00\x01\x1b[31m" + "a" * 29 + "-b7ad6b7169203331-01"}
    if choice == 4:
        return {b"traceparent": bytes(rng.randrange(256) for _ in range(55))}
    if choice == 5:
        return {"__pipetrace__": 1, "value": {"rows": 1}, "context": {"traceparent": "\ud800" * 55}}
    if choice == 6:
        return "00-" + "f" * 10_000
    if choice == 7:
        return {"traceparent": [TP] * 1000}
    return {"tracestate": ",".join(f"v{i}=x" for i in range(10_000)), "traceparent": TP}


def test_adversarial_carriers_everywhere(traced, report, caplog: pytest.LogCaptureFixture) -> None:
    ratelimit.reset()
    rng = random.Random(7)
    samples = [adversarial(rng) for _ in range(200)]
    tracemalloc.start()
    runs = 0
    for round_ in range(5):
        for i, carrier in enumerate(samples):
            extract(carrier, source="headers")
            value, _ = unwrap(carrier, source="xcom")
            span_context_of(carrier, source="run conf")
            # a run whose metadata (conf, tags, labels) holds the garbage still runs and is traced
            with pipetrace.task_span("python", "bad_input", f"run-{round_}-{i}", "t", upstream=carrier):
                runs += 1
        if round_ == 0:
            traced.flush()  # what is kept, not what waits in the export queue (its backlog depends on the load)
            after_first, _ = tracemalloc.get_traced_memory()
    traced.flush()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    traced.flush()
    stored = traced.store._query("SELECT COUNT(*) FROM spans WHERE pipeline='bad_input'")[0][0]  # noqa: SLF001
    report.append(FaultRow("bad input: 1,000 adversarial carriers", runs, runs, stored, 0.0, 0.0))
    assert stored == runs
    # memory does not grow with the number of bad carriers seen (warnings are rate-limited, nothing cached)
    assert current - after_first < 2_000_000, (after_first, current)
    assert peak < 64_000_000
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) < 30
