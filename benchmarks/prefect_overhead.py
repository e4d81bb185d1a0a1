"""Prefect overhead: a flow of 50 task runs (25 mapped, 24 submitted, one fan-in), three ways side by
side in one run, each in its own long-lived process with its own ephemeral server:

* ``off``: Prefect as installed, no OTel SDK and no pipetrace (native run telemetry at its default, on,
  with nothing behind it);
* ``pipetrace``: pipetrace instrumented as deployed (redaction on; ``--exporters``, default
  ``store,otlp``), native telemetry at its default (pipetrace takes over its seam);
* ``native``: Prefect's native OTel run telemetry, set up as OTel's docs tell a user: a plain SDK
  ``TracerProvider`` + ``BatchSpanProcessor`` + OTLP/HTTP exporter, no pipetrace.

Prefect's own telemetry setting is the same (its default) in all three. Both traced sides export OTLP to
the same local receiver, which counts the spans it got. Rounds are paired and interleaved, the order
rotated each round. A run's CPU is that of its whole process tree (every thread, the ephemeral server
included), read after the run's spans were flushed. Prints wall and CPU as median (min, max), the
per-round ratios to ``off``, the added ms per task run; ``--markdown`` ends with the closing-note rows.
Goals (issue 24): pipetrace ≤ 1.05× off, and cheaper than native telemetry.

    .venvs/prefect/bin/python benchmarks/prefect_overhead.py [--rounds 7] [--tasks 50] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (  # noqa: E402
    TABLE_HEADER,
    SpanCounter,
    fmt_spread,
    paired_ratios,
    paired_rounds,
    summary_row,
    tree_cpu,
)

MODES = ("off", "pipetrace", "native")
BEFORE = "1.058 (fixed order; native telemetry off only for the baseline)"

CHILD = r'''
import json, os, sys, time
mode, n, exporters = sys.argv[1], int(sys.argv[2]), sys.argv[3]
flush = lambda: None
if mode == "pipetrace":
    import pipetrace
    from pipetrace.integrations.prefect import instrument
    pipetrace.configure(exporters=exporters, otlp_endpoint=os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"])
    instrument()
    flush = lambda: pipetrace.force_flush(30)
elif mode == "native":
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    provider = TracerProvider(resource=Resource.create({"service.name": "bench_prefect"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    flush = lambda: provider.force_flush(30_000)
from prefect import flow, task


@task
def work(i: int) -> int:
    return sum(range(200)) + i


@task
def collect(values: list[int]) -> int:
    return len(values)


@flow(name="bench_prefect")
def bench() -> int:
    half = n // 2
    mapped = work.map(range(half))
    submitted = [work.submit(i) for i in range(half, n - 1)]
    return collect(list(mapped) + submitted)


for _ in range(2):  # warm-up: the ephemeral server, imports, first-run caches
    bench()
flush()
print("ready", flush=True)
for line in sys.stdin:
    start = time.perf_counter()
    bench()
    wall = time.perf_counter() - start
    flush()  # the run's export work belongs to it
    print(json.dumps({"wall": wall}), flush=True)
'''


class Side:
    """One mode's long-lived process; :meth:`run` runs the flow once and returns (wall, CPU of the tree)."""

    def __init__(self, mode: str, tasks: int, exporters: str, endpoint: str) -> None:
        self.prefect_home = tempfile.mkdtemp(prefix=f"pipetrace-bench-prefect-{mode}-")
        env = dict(os.environ, PREFECT_HOME=self.prefect_home, PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   PREFECT_LOGGING_LEVEL="WARNING", PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
                   PIPETRACE_HOME=os.path.join(self.prefect_home, "pt"), OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
        for name in ("PREFECT_PLUGINS_ENABLED", "PIPETRACE_AUTO", "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY",
                     "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            env.pop(name, None)
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, mode, str(tasks), exporters], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.mode = mode

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{self.mode}: the benchmark process did not start")

    def run(self) -> tuple[float, float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        before = sum(tree_cpu(self.proc.pid))
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        wall = float(json.loads(self.proc.stdout.readline())["wall"])
        return wall, sum(tree_cpu(self.proc.pid)) - before

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--exporters", default="store,otlp", help="pipetrace exporters for the traced runs")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    spans: dict[str, list[int]] = {m: [] for m in MODES}
    with SpanCounter() as receiver:
        sides = {m: Side(m, args.tasks, args.exporters, receiver.endpoint) for m in MODES}  # start together
        for side in sides.values():
            side.wait_ready()
        time.sleep(1.0)

        def one(mode: str, _round: int) -> tuple[float, float]:
            before = receiver.spans
            out = sides[mode].run()
            receiver.wait_for(before + 1, 5.0 if mode != "off" else 0.0)
            time.sleep(0.1)
            spans[mode].append(receiver.spans - before)
            return out

        try:
            runs, loads = paired_rounds(MODES, args.rounds, one)
        finally:
            for side in sides.values():
                side.close()
    print(f"prefect flow of {args.tasks} task runs, {args.rounds} paired rounds (rotating order), "
          f"pipetrace exporters {args.exporters}; spans received per run: "
          + ", ".join(f"{m} {min(spans[m])}–{max(spans[m])}" for m in MODES))
    rows = []
    for k, label in ((0, "wall"), (1, "CPU")):
        off = [r[k] for r in runs["off"]]
        print(f"  {label}: off {fmt_spread(off, '.3f')} s")
        for mode in ("pipetrace", "native"):
            values = [r[k] for r in runs[mode]]
            ratios = paired_ratios(values, off)
            added = [(b - a) / args.tasks * 1000 for a, b in zip(off, values, strict=True)]
            print(f"    {mode:9s} {fmt_spread(values, '.3f')} s  ratio per round {fmt_spread(ratios, '.3f')}  "
                  f"added per task run {fmt_spread(added, '+.2f')} ms")
        ours = paired_ratios([r[k] for r in runs["pipetrace"]], off)
        native = paired_ratios([r[k] for r in runs["native"]], off)
        vs_native = paired_ratios([r[k] for r in runs["pipetrace"]], [r[k] for r in runs["native"]])
        print(f"    pipetrace / native per round {fmt_spread(vs_native, '.3f')} (goal: pipetrace <= 1.05x off, "
              f"and cheaper than native)")
        rows.append(summary_row(
            f"Prefect {args.tasks}-task flow {label}, pipetrace / off (`prefect_overhead.py --rounds {args.rounds}`,"
            f" exporters {args.exporters})", BEFORE if k == 0 else "not measured",
            f"**{statistics.median(ours):.3f}**", f"native OTel telemetry (plain SDK + BSP + OTLP): "
            f"{statistics.median(native):.3f}; pipetrace / native {statistics.median(vs_native):.3f}",
            f"{min(ours):.3f}–{max(ours):.3f}", loads))
    if args.markdown:
        print(TABLE_HEADER)
        print("\n".join(rows))


if __name__ == "__main__":
    main()
