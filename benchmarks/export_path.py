"""The export thread's work per span, in one process: redaction (as the default settings configure it) and
OTLP encoding, on realistic Celery spans (a ``send`` PRODUCER span and a ``task`` CONSUMER span per task,
with the attributes the Celery adapter records: unique task ids, a float queue wait). Thread CPU per span,
so a loaded machine barely moves it; the SDK's own OTLP encoder alongside, for scale.

``--before <checkout>`` runs the same measures with that checkout's ``.venvs/<env>`` (its pipetrace) in
the same interleaved rounds: a paired before/after of the export path that needs no worker.

    python benchmarks/export_path.py [--spans 4096] [--rounds 7] [--before <checkout>] [--env celery]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import fmt_spread, load_range, paired_ratios, paired_rounds  # noqa: E402

MEASURES = ("redaction", "otlp encoding", "sdk encoding")


def celery_spans(tasks: int) -> list[Any]:
    """A send and a task span per task, as pipetrace's Celery adapter records them for ``noop.delay()``."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

    resource = Resource({"telemetry.sdk.language": "python", "telemetry.sdk.name": "opentelemetry",
                         "telemetry.sdk.version": "1.45.2", "service.instance.id": str(uuid.uuid4()),
                         "service.name": "pipeline_app-worker", "host.name": "vm", "process.pid": 1234})
    scope = InstrumentationScope("pipetrace", "")
    sampled = TraceFlags(TraceFlags.SAMPLED)
    queue, task_name = "bench-91da6f", "pipeline_app.noop"
    common = {"pipetrace.system": "celery", "messaging.system": "redis", "messaging.destination.name": queue}
    out = []
    for _ in range(tasks):
        trace_id, task_id, now = random.getrandbits(128), str(uuid.uuid4()), time.time_ns()
        send = ReadableSpan(
            name=f"send {queue}", context=SpanContext(trace_id, random.getrandbits(64), False, sampled),
            resource=resource, kind=SpanKind.PRODUCER, start_time=now, end_time=now + 50_000,
            instrumentation_scope=scope,
            attributes={**common, "messaging.operation.type": "send", "messaging.operation.name": "publish",
                        "cicd.pipeline.task.name": task_name, "messaging.message.id": task_id,
                        "cicd.pipeline.name": task_name, "cicd.pipeline.run.id": task_id})
        assert send.context is not None
        task = ReadableSpan(
            name=f"task {task_name}", context=SpanContext(trace_id, random.getrandbits(64), False, sampled),
            parent=SpanContext(trace_id, send.context.span_id, True, sampled), resource=resource,
            kind=SpanKind.CONSUMER, start_time=now + 900_000, end_time=now + 1_000_000, instrumentation_scope=scope,
            attributes={**common, "messaging.operation.type": "process", "cicd.pipeline.task.name": task_name,
                        "cicd.pipeline.name": task_name, "cicd.pipeline.run.id": task_id,
                        "cicd.pipeline.task.run.id": task_id, "pipetrace.task.try_number": 1,
                        "pipetrace.task.queued_ms": random.random() * 1000,
                        "cicd.pipeline.task.run.result": "success"})
        out += [send, task]
    return out


def measure(spans: int) -> dict[str, float]:
    """Thread CPU µs per span of each measure, on fresh spans (unique ids, as in a worker)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from pipetrace.config import load
    from pipetrace.machinery import otlpwire
    from pipetrace.redaction import transform_for

    redact = transform_for(load())  # the default settings: redaction on
    assert redact is not None
    batch = 512  # the OTLP queue's batch (OTEL_BSP_MAX_EXPORT_BATCH_SIZE default)

    def timed(work: Any, repeats: int = 5) -> float:
        """Median over ``repeats`` fresh span sets (a loaded machine's preemptions hit single runs)."""
        took = []
        for _ in range(repeats):
            data = celery_spans(spans // 2)
            start = time.thread_time_ns()
            work(data)
            took.append((time.thread_time_ns() - start) / len(data) / 1000)
        return statistics.median(took)

    timed(lambda d: [redact(s) for s in d], 1)  # warm-up: caches, first calls
    timed(lambda d: otlpwire.encode_request(d[:batch]), 1)
    return {
        "redaction": timed(lambda d: [redact(s) for s in d]),
        "otlp encoding": timed(lambda d: [otlpwire.encode_request(d[i:i + batch]) for i in range(0, len(d), batch)]),
        "sdk encoding": timed(lambda d: [encode_spans(d[i:i + batch]).SerializeToString()
                                         for i in range(0, len(d), batch)]),
    }


def run_in(python: Path, spans: int) -> dict[str, float]:
    env = dict(os.environ, PIPETRACE_HOME=os.environ.get("PIPETRACE_HOME", "/tmp/pipetrace-bench-export"))
    out = subprocess.run([str(python), __file__, "--child", str(spans)], env=env, check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--before", type=Path, help="another checkout (with .venvs/<env>) measured as 'before'")
    ap.add_argument("--env", default="celery")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    pythons = {"after": Path(sys.executable)}
    if args.before is not None:
        pythons = {"before": args.before.resolve() / ".venvs" / args.env / "bin" / "python", **pythons}
    runs, loads = paired_rounds(tuple(pythons), args.rounds, lambda mode, _r: run_in(pythons[mode], args.spans))
    print(f"export path per span (thread CPU µs), {args.spans} Celery spans a round (half send, half task), "
          f"{args.rounds} interleaved rounds, median (min, max); load {load_range(loads)}")
    for name in MEASURES:
        cells = "  ".join(f"{mode} {fmt_spread([r[name] for r in rs])}" for mode, rs in runs.items())
        line = f"  {name:14s} {cells}"
        if "before" in runs:
            ratios = paired_ratios([r[name] for r in runs["after"]], [r[name] for r in runs["before"]])
            line += f"  after/before {fmt_spread(ratios)}"
        print(line)
    if "before" in runs:
        total = [r["redaction"] + r["otlp encoding"] for r in runs["after"]]
        old = [r["redaction"] + r["otlp encoding"] for r in runs["before"]]
        print(f"  redaction + encoding: before {statistics.median(old):.2f}, after {statistics.median(total):.2f} µs "
              f"a span; after/before per round {fmt_spread(paired_ratios(total, old))}")


if __name__ == "__main__":
    main()
