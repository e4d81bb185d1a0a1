"""Celery's four tracing handlers alone, timed where a round trip runs them, warm and with cold caches: pipetrace's and
the reference's ``before_task_publish``, ``after_task_publish``, ``task_prerun`` and ``task_postrun``, each side in
its own fresh process per round, exporting OTLP to one local receiver.

Why: ``celery_toggle.py`` measures what tracing adds to a round trip (pipetrace ~237 µs, the reference ~404 µs on
one core) and counts say the handlers are where the work is. This script says how much of the added wall the
handlers themselves are: each handler is called directly (with the headers a real publish wrote, the request a
worker pushes), timed call by call, once warm and once right after a sweep of ``--sweep`` bytes (every cache and
the TLB cold, as after other processes ran). What the handlers do not explain of ``celery_toggle.py``'s added wall
is work tracing causes elsewhere (kernel, other threads, the broker and the worker around the handlers).

The reference is set up as its docs show (plain SDK provider, ``BatchSpanProcessor``, OTLP/HTTP exporter,
``CeleryInstrumentor``); pipetrace as ``pipetrace run`` configures it (``PIPETRACE_EXPORTERS=otlp``, redaction on).
Rounds alternate the sides' order; per handler the median over calls, then median (min, max) over rounds, and
pipetrace / reference per handler and for the path a caller of ``delay().get()`` waits for (the publish's two and
``task_prerun``).

    python benchmarks/celery_handlers.py [--rounds 6] [--calls 500] [--sweep 16000000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import SpanCounter, fmt_spread, load, load_range, rotated  # noqa: E402

SIDES = ("otel", "pipetrace")
HANDLERS = ("before_task_publish", "after_task_publish", "task_prerun", "task_postrun")
CRITICAL = HANDLERS[:3]
WARMUP = 300  # untimed calls a process makes first

CHILD = r'''
import json, os, statistics, sys, time, uuid
side, calls, sweep, warm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
from celery import Celery
app = Celery("pipeline_app", broker="memory://")

@app.task(name="pipeline_app.noop")
def noop():
    return None

app.finalize()
task = app.tasks["pipeline_app.noop"]
if side == "pipetrace":
    import pipetrace
    from pipetrace.integrations import celery as traced
    from pipetrace.integrations.celery import publish, worker
    traced.instrument()
    pipetrace.get_tracer()
    handlers = (publish.before_publish, publish.after_publish, worker.task_prerun, worker.task_postrun)
    flush = lambda: pipetrace.shutdown(10)
else:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    instrumentor = CeleryInstrumentor()
    instrumentor.instrument()
    handlers = (instrumentor._trace_before_publish, instrumentor._trace_after_publish, instrumentor._trace_prerun,
                instrumentor._trace_postrun)
    flush = provider.shutdown
before, after, prerun, postrun = handlers
buf = bytearray(max(sweep, 64))
clock = time.perf_counter


def cool(cold):
    if cold:
        buf[::64] = b"x" * len(range(0, len(buf), 64))


def one(cold):
    tid = str(uuid.uuid4())
    headers = {"lang": "py", "task": task.name, "id": tid, "shadow": None, "eta": None, "expires": None,
               "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": tid,
               "parent_id": None, "argsrepr": "()", "kwargsrepr": "{}", "origin": "gen1@host", "ignore_result": False}
    body = ((), {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None})
    times = []
    cool(cold)
    t0 = clock()
    before(sender=task.name, body=body, exchange="", routing_key="q", headers=headers, properties={}, declare=[],
           retry_policy=None)
    t1 = clock()
    after(sender=task.name, body=body, exchange="", routing_key="q", headers=headers)
    t2 = clock()
    times += [t1 - t0, t2 - t1]
    task.push_request(**dict(headers, delivery_info={"exchange": "", "routing_key": "q", "priority": 0,
                                                     "redelivered": False}, hostname="w@h", is_eager=False))
    cool(cold)  # the worker runs it in another process: its caches are not the producer's
    t0 = clock()
    prerun(sender=task, task_id=tid, task=task, args=(), kwargs={})
    t1 = clock()
    postrun(sender=task, task_id=tid, task=task, args=(), kwargs={}, retval=None, state="SUCCESS")
    t2 = clock()
    task.pop_request()
    return times + [t1 - t0, t2 - t1]


for _ in range(warm):
    one(False)
out = {}
for mode, cold in (("warm", False), ("cold", True)):
    rows = [one(cold) for _ in range(calls)]
    out[mode] = [statistics.median(r[i] for r in rows) * 1e6 for i in range(4)]
flush()
print(json.dumps(out))
'''


def one_side(side: str, args: argparse.Namespace, receiver: SpanCounter) -> dict[str, list[float]]:
    """A fresh process of ``side``: per mode (warm, cold), the median µs of each handler."""
    receiver.reset()
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, PIPETRACE_EXPORTERS="otlp",
                   PIPETRACE_HOME=home)
        for name in ("PIPETRACE_AUTO", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            env.pop(name, None)
        done = subprocess.run([sys.executable, "-c", CHILD, side, str(args.calls), str(args.sweep), str(WARMUP)],
                              env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{side}: {done.stderr[-2000:]}")
    expected = (WARMUP + 2 * args.calls) * 2  # a send and a task span a call
    receiver.wait_for(expected, 30)
    print(f"  {side:9s} spans received {receiver.spans}/{expected}", file=sys.stderr, flush=True)
    figures: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--calls", type=int, default=500, help="timed calls of each handler per mode and process")
    ap.add_argument("--sweep", type=int, default=16_000_000, help="bytes written before each cold call")
    args = ap.parse_args()
    runs: dict[str, list[dict[str, list[float]]]] = {side: [] for side in SIDES}
    loads = []
    with SpanCounter() as receiver:
        for r in range(args.rounds):
            for side in rotated(SIDES, r):
                runs[side].append(one_side(side, args, receiver))
            loads.append(load())
    print(f"celery handlers called directly, one process per side and round, {args.rounds} rounds (order alternated), "
          f"{args.calls} calls each; median µs a call, median (min, max) over rounds; cold: after a "
          f"{args.sweep / 1e6:.0f} MB sweep; load {load_range(loads)}")
    for mode in ("warm", "cold"):
        sums: dict[str, dict[str, float]] = {}
        for side in SIDES:
            per = {h: [run[mode][i] for run in runs[side]] for i, h in enumerate(HANDLERS)}
            sums[side] = {h: statistics.median(v) for h, v in per.items()}
            print(f"  {mode} {side:9s} " + "  ".join(f"{h} {fmt_spread(per[h], '.1f')}" for h in HANDLERS))
        ratios = "  ".join(f"{h} {sums['pipetrace'][h] / sums['otel'][h]:.2f}" for h in HANDLERS)
        ours, ref = (sum(sums[s][h] for h in CRITICAL) for s in ("pipetrace", "otel"))
        print(f"  {mode} pipetrace / reference: {ratios}; the path a caller waits for ({', '.join(CRITICAL)}) "
              f"{ours:.1f} / {ref:.1f} us = {ours / ref:.2f}; all four "
              f"{sum(sums['pipetrace'].values()):.1f} / {sum(sums['otel'].values()):.1f} us")


if __name__ == "__main__":
    main()
