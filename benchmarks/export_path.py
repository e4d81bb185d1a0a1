"""The export side's work per span, in one process, as thread CPU per span (a loaded machine barely moves it).

* Stages, one thread, no queues: redaction (as the default settings configure it), OTLP encoding, the
  store's row encoding, on realistic spans of three systems: Celery (a ``send`` PRODUCER and a ``task``
  CONSUMER span per task: unique task ids, a float queue wait), Dagster (a 30-op run: 30 step spans with
  ``result`` links and the run span) and Prefect (a 50-task flow shaped as a real one's spans reach the
  export side: unique UUIDv7 task-run and state ids, generated run names, state events, the fan-in's
  links, a batch span and the run span); the SDK's own OTLP encoder alongside, for scale.
* The chain, as deployed: ``PipelineProcessor.on_end`` for each span of a run, then ``force_flush`` (as
  the Dagster and Prefect benchmarks do after each run), with the default exporters (store + OTLP/HTTP
  to a local receiver in this process) and redaction on. CPU of every pipetrace thread and of the
  calling thread (``on_end`` and the flush), per span; the receiver's threads are the other side and
  not counted.

``--before <checkout>`` runs the same measures with that checkout's ``.venvs/<env>`` (its pipetrace) in
the same interleaved rounds: a paired before/after of the export path that needs no worker. The span
shapes are what pipetrace sends now (both sides get the same spans): attributes a change removed from
the spans show in the adapters' own benchmarks, not here. Their attributes (span, event, link) are held
as the SDK holds a finished span's, in ``BoundedAttributes`` (until this stop they were plain dicts, which
hid what reading them through the public mapping costs).

    python benchmarks/export_path.py [--spans 4096] [--rounds 7] [--before <checkout>] [--env core]

``chain transform`` is the transform stage's own thread where a chain has one (0 where it has none).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import fmt_spread, load_range, paired_ratios, paired_rounds  # noqa: E402

SYSTEMS = ("celery", "dagster", "prefect")
STAGES = ("redaction", "otlp encoding", "store rows", "sdk encoding")
THREADS = ("caller", "transform", "store", "otlp", "chain")
MEASURES = (*(f"{system} {stage}" for system in SYSTEMS for stage in STAGES),
            *(f"{system} chain {part}" for system in ("dagster", "prefect") for part in THREADS))
CHAIN_RUNS = {"dagster": 40, "prefect": 24}  # runs fed through the chain per round (~1,200 spans each)


@functools.cache
def _common() -> tuple[Any, Any, Any]:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import TraceFlags

    resource = Resource({"telemetry.sdk.language": "python", "telemetry.sdk.name": "opentelemetry",
                         "telemetry.sdk.version": "1.45.2", "service.instance.id": str(uuid.uuid4()),
                         "service.name": "pipeline_app-worker", "host.name": "vm", "process.pid": 1234})
    return resource, InstrumentationScope("pipetrace", ""), TraceFlags(TraceFlags.SAMPLED)


def bounded(attributes: dict[str, Any]) -> Any:
    """``attributes`` held as the SDK holds a finished span's, event's and link's (``BoundedAttributes``):
    what pipetrace's export threads get from a real span (reading them through the public mapping walks
    them in Python)."""
    from opentelemetry.attributes import BoundedAttributes

    return BoundedAttributes(None, attributes, immutable=True)


def _span(name: str, trace_id: int, parent: int | None, kind: Any, start: int, attributes: dict[str, Any],
          **more: Any) -> Any:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, Status, StatusCode

    resource, scope, sampled = _common()
    return ReadableSpan(name=name, context=SpanContext(trace_id, random.getrandbits(64), False, sampled),
                        parent=SpanContext(trace_id, parent, False, sampled) if parent else None, resource=resource,
                        kind=kind, start_time=start, end_time=start + 2_000_000, instrumentation_scope=scope,
                        attributes=bounded(attributes), status=more.pop("status", Status(StatusCode.OK)), **more)


def celery_spans(tasks: int) -> list[Any]:
    """A send and a task span per task, as pipetrace's Celery adapter records them for ``noop.delay()``."""
    from opentelemetry.trace import SpanKind

    queue, task_name = "bench-91da6f", "pipeline_app.noop"
    common = {"pipetrace.system": "celery", "messaging.system": "redis", "messaging.destination.name": queue}
    out = []
    for _ in range(tasks):
        trace_id, task_id, now = random.getrandbits(128), str(uuid.uuid4()), time.time_ns()
        send = _span(f"send {queue}", trace_id, None, SpanKind.PRODUCER, now,
                     {**common, "messaging.operation.type": "send", "messaging.operation.name": "publish",
                      "cicd.pipeline.task.name": task_name, "messaging.message.id": task_id,
                      "cicd.pipeline.name": task_name, "cicd.pipeline.run.id": task_id})
        task = _span(f"task {task_name}", trace_id, send.context.span_id, SpanKind.CONSUMER, now + 900_000,
                     {**common, "messaging.operation.type": "process", "cicd.pipeline.task.name": task_name,
                      "cicd.pipeline.name": task_name, "cicd.pipeline.run.id": task_id,
                      "cicd.pipeline.task.run.id": task_id, "pipetrace.task.try_number": 1,
                      "pipetrace.task.queued_ms": random.random() * 1000,
                      "cicd.pipeline.task.run.result": "success"})
        out += [send, task]
    return out


def dagster_spans(runs: int) -> list[Any]:
    """A 30-op run as the Dagster adapter records it (``benchmarks/dagster_overhead.py``'s job): a step span
    per op, each with a ``result`` link to the op before it, then the run span."""
    from opentelemetry.trace import Link, SpanContext, SpanKind

    job = "bench_30_ops"
    out = []
    for _ in range(runs):
        trace_id, run_id, now = random.getrandbits(128), str(uuid.uuid4()), time.time_ns()
        run_span_id = random.getrandbits(64)
        base = {"pipetrace.system": "dagster", "cicd.pipeline.name": job, "cicd.pipeline.run.id": run_id}
        steps = [f"stage_{i:02d}" for i in range(1, 29)]
        previous: Any = None
        for n, step in enumerate(["source", *steps, "sink"]):
            links = []
            if previous is not None:
                sampled = _common()[2]
                links = [Link(SpanContext(trace_id, previous.context.span_id, False, sampled), bounded(
                    {"pipetrace.link.kind": "result", "dagster.input": "value", "dagster.output": "result"}))]
            previous = _span(f"task {step}", trace_id, run_span_id, SpanKind.INTERNAL, now + n * 3_000_000,
                             {**base, "cicd.pipeline.task.name": step, "pipetrace.task.try_number": 1,
                              "cicd.pipeline.task.run.id": f"{run_id}/{step}#1", "dagster.step_key": step,
                              "dagster.op": step,
                              "cicd.pipeline.task.run.result": "success"}, links=links)
            out.append(previous)
        out.append(_span(f"run {job}", trace_id, None, SpanKind.SERVER, now,
                         {**base, "dagster.job": job, "dagster.run_id": run_id, "cicd.pipeline.result": "success"}))
    return out


_ADJECTIVES = ("vigilant", "puzzling", "keen", "smart", "brave", "calm", "daring", "eager", "fancy", "gentle",
               "hungry", "jolly", "lucky", "mellow", "nimble", "olive", "proud", "quick", "rustic", "witty")
_ANIMALS = ("coua", "hyena", "baboon", "lemur", "otter", "falcon", "gecko", "heron", "ibis", "jackal", "koala",
            "lynx", "marmot", "newt", "ocelot", "panda", "quail", "raven", "skink", "tapir")


def uuid7() -> str:
    """A UUIDv7 as Prefect makes its task-run and state ids (``prefect._internal.uuid7``): a millisecond
    clock, then random bits; unique, as real ones are (the redactor's value caches cannot hold them)."""
    value = (time.time_ns() // 1_000_000) << 80 | 0x7 << 76 | random.getrandbits(12) << 64 | 0b10 << 62 \
        | random.getrandbits(62)
    return str(uuid.UUID(int=value))


def _state_events(start: int) -> list[Any]:
    """A task run's Running and Completed events as the Prefect adapter adds them: the state type a plain str,
    a fresh state id each."""
    from opentelemetry.sdk.trace import Event

    return [Event(name, bounded({"prefect.state.message": "", "prefect.state.type": name.upper(),
                                 "prefect.state.name": name, "prefect.state.id": uuid7()}), start + n * 1_000_000)
            for n, name in enumerate(("Running", "Completed"))]


def prefect_spans(runs: int, tasks: int = 50) -> list[Any]:
    """A 50-task flow as the Prefect adapter records it for ``benchmarks/prefect_overhead.py``'s flow (25 mapped
    ``work`` runs, 24 submitted, a ``collect`` fan-in), shaped as a real run's spans reach the export side:
    task-run and state ids are UUIDv7s, unique per task run; task-run names ``<task>-<3 hex>``, the flow
    run's a generated ``adjective-animal`` slug; ``collect`` has a ``result`` link per input (its producer's
    run id) and Prefect's own link per input beside it; a batch span for the mapped runs; the run span."""
    from opentelemetry.trace import Link, SpanContext, SpanKind, Status

    flow = "bench_prefect"
    flow_id = _flow_id()
    sampled = _common()[2]
    out = []
    for _ in range(runs):
        trace_id, run_id, now = random.getrandbits(128), str(uuid.uuid4()), time.time_ns()
        run_span_id, batch_id = random.getrandbits(64), random.getrandbits(64)
        base = {"pipetrace.system": "prefect", "cicd.pipeline.name": flow, "cicd.pipeline.run.id": run_id}
        inputs: list[tuple[int, str]] = []
        for n in range(tasks):
            last = n == tasks - 1
            name, task_id = ("work", "collect")[last], uuid7()
            attrs: dict[str, Any] = {
                "prefect.run.name": f"{name}-{uuid.uuid4().hex[:3]}", "prefect.run.type": "task",
                "prefect.run.id": task_id, "prefect.tags": (),
                f"prefect.run.parameter.{('i', 'values')[last]}": ("int", "list")[last], **base,
                "cicd.pipeline.task.name": name, "cicd.pipeline.task.run.id": task_id}
            if n < tasks // 2:
                attrs["pipetrace.task.map_index"] = n
            attrs.update({"pipetrace.task.try_number": 1, "pipetrace.task.queued_ms": round(random.random(), 3),
                          "cicd.pipeline.task.run.result": "success"})
            parent = batch_id if n < tasks // 2 else run_span_id
            start = now + n * 2_000_000
            links = []
            if last:
                links = [Link(SpanContext(trace_id, span_id, False, sampled), bounded(  # (the id: a str of its own)
                    {"pipetrace.link.kind": "result", "prefect.input.name": "values",
                     "prefect.input.run.id": str(uuid.UUID(rid)), "prefect.input.run.type": "task_run"}))
                    for span_id, rid in inputs]
                links += [Link(SpanContext(trace_id, span_id, False, sampled), bounded(
                    {"prefect.input.name": "values", "prefect.input.type": "int"})) for span_id, _ in inputs]
            span = _span(f"task {name}", trace_id, parent, SpanKind.INTERNAL, start, attrs,
                         events=_state_events(start), links=links)
            inputs.append((span.context.span_id, task_id))
            out.append(span)
        out.append(_span("batch work", trace_id, run_span_id, SpanKind.INTERNAL, now,
                         {**base, "cicd.pipeline.task.name": "work", "pipetrace.batch.size": tasks // 2,
                          "pipetrace.batch.index": 0}, status=Status()))
        flow_run = {"prefect.run.name": f"{random.choice(_ADJECTIVES)}-{random.choice(_ANIMALS)}",
                    "prefect.run.type": "flow", "prefect.run.id": run_id, "prefect.tags": (),
                    "prefect.flow.id": flow_id, **base, "cicd.pipeline.result": "success"}
        out.append(_span(f"run {flow}", trace_id, None, SpanKind.SERVER, now, flow_run, events=_state_events(now)))
    return out


@functools.cache
def _flow_id() -> str:
    return str(uuid.uuid4())  # one flow: one id, on every run's span


PER_RUN = {"celery": 2, "dagster": 31, "prefect": 52}  # spans per task (Celery) or per run
FACTORIES = {"celery": celery_spans, "dagster": dagster_spans, "prefect": prefect_spans}


def measure_stages(system: str, spans: int) -> dict[str, float]:
    """Thread CPU µs per span of each stage, on fresh spans (unique ids, as in a real process)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from pipetrace.config import Settings, load
    from pipetrace.machinery import otlpwire
    from pipetrace.processing.export import build_queues
    from pipetrace.processing.runtime import _builtin_transforms
    from pipetrace.store.records import readable_row

    [redact] = _builtin_transforms(load())  # as the chain has it, with the default settings: redaction on
    [store_queue] = build_queues(Settings(home=Path(tempfile.mkdtemp(prefix="pipetrace-bench-rows-")),
                                          exporters=("store",)))
    row = getattr(store_queue.exporter, "_row", readable_row)  # as the store exporter makes its rows
    batch = 512  # the OTLP queue's batch (OTEL_BSP_MAX_EXPORT_BATCH_SIZE default)
    make = FACTORIES[system]

    def timed(work: Any, repeats: int = 5) -> float:
        """Median over ``repeats`` fresh span sets (a loaded machine's preemptions hit single runs)."""
        took = []
        for _ in range(repeats):
            data = make(max(1, spans // PER_RUN[system]))
            start = time.thread_time_ns()
            work(data)
            took.append((time.thread_time_ns() - start) / len(data) / 1000)
        return statistics.median(took)

    def batches(encode: Any) -> Any:
        return lambda d: [encode(d[i:i + batch]) for i in range(0, len(d), batch)]

    timed(lambda d: [redact(s) for s in d], 1)  # warm-up: caches, first calls
    timed(batches(otlpwire.encode_request), 1)
    return {
        f"{system} redaction": timed(lambda d: [redact(s) for s in d]),
        f"{system} otlp encoding": timed(batches(otlpwire.encode_request)),
        f"{system} store rows": timed(lambda d: [row(s) for s in d]),
        f"{system} sdk encoding": timed(batches(lambda b: encode_spans(b).SerializeToString())),
    }


def _thread_cpu_ns() -> dict[str, int]:
    """CPU ns of each live thread by role: pipetrace's export threads, and this (the calling) thread."""
    out = {"caller": time.thread_time_ns()}
    for thread in threading.enumerate():
        name = thread.name
        if name.startswith("pipetrace-export-") and thread.ident is not None:
            try:
                clock = time.pthread_getcpuclockid(thread.ident)
                out[name.removeprefix("pipetrace-export-")] = time.clock_gettime_ns(clock)
            except (OSError, ProcessLookupError):
                continue
    return out


def measure_chain(system: str, receiver: Any) -> dict[str, float]:
    """Thread CPU µs per span of each thread of the chain: ``on_end`` per span and a flush per run."""
    import pipetrace
    from pipetrace.processing import runtime

    pipetrace.configure(home=tempfile.mkdtemp(prefix="pipetrace-bench-export-"), exporters="store,otlp",
                        otlp_endpoint=receiver.endpoint)
    processor = runtime._state.processor  # noqa: SLF001 - the chain as configure built it
    assert processor is not None
    make = FACTORIES[system]

    def feed(runs: list[list[Any]]) -> int:
        for spans in runs:
            for span in spans:
                processor.on_end(span)
            assert processor.force_flush(30_000)
        return sum(len(spans) for spans in runs)

    feed([make(1) for _ in range(3)])  # warm-up: threads started, store schema, first connection, caches
    runs = [make(1) for _ in range(CHAIN_RUNS[system])]  # made before: only the chain's work is timed
    receiver.reset()
    before = _thread_cpu_ns()
    fed = feed(runs)
    after = _thread_cpu_ns()
    assert receiver.wait_for(fed, 30), f"receiver got {receiver.spans} of {fed}"
    parts = {part: (after.get(part, 0) - before.get(part, 0)) / fed / 1000 for part in THREADS[:-1]}
    pipetrace.shutdown()
    return {**{f"{system} chain {part}": v for part, v in parts.items()},
            f"{system} chain chain": sum(parts.values())}


def measure(spans: int) -> dict[str, float]:
    from _harness import SpanCounter

    out: dict[str, float] = {}
    for system in SYSTEMS:
        out.update(measure_stages(system, spans))
    with SpanCounter() as receiver:
        for system in CHAIN_RUNS:
            out.update(measure_chain(system, receiver))
    return out


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
    ap.add_argument("--env", default="core")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    pythons = {"after": Path(sys.executable)}
    if args.before is not None:
        pythons = {"before": args.before.resolve() / ".venvs" / args.env / "bin" / "python", **pythons}
    runs, loads = paired_rounds(tuple(pythons), args.rounds, lambda mode, _r: run_in(pythons[mode], args.spans))
    print(f"export path per span (thread CPU µs), {args.spans} spans a round per system for the stages, "
          f"{CHAIN_RUNS} runs for the chain; {args.rounds} interleaved rounds, median (min, max); "
          f"load {load_range(loads)}")
    for name in MEASURES:
        cells = "  ".join(f"{mode} {fmt_spread([r.get(name, 0.0) for r in rs])}" for mode, rs in runs.items())
        line = f"  {name:28s} {cells}"
        if "before" in runs and all(r.get(name) for r in runs["before"]):
            ratios = paired_ratios([r.get(name, 0.0) for r in runs["after"]], [r[name] for r in runs["before"]])
            line += f"  after/before {fmt_spread(ratios)}"
        print(line)

if __name__ == "__main__":
    main()
