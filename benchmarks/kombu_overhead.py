"""kombu overhead on ``memory://``: 10,000 small messages published and consumed (in batches of 100),
side by side in one run: untraced, propagation only, batch spans, per-message spans.

Each mode runs in a fresh subprocess (clean instrumentation state) with pipetrace's defaults as
deployed with an endpoint: the embedded store in a temporary PIPETRACE_HOME plus OTLP/HTTP to a local
receiver that counts the spans it got. Time and CPU (every thread) include the final flush. Rounds are
paired, every mode once per round in rotating order; prints median (min, max) and the per-round ratios
to untraced; ``--markdown`` ends with the closing-note rows.
Goal (issue 4): propagation only <= 1.3x, batch spans <= 1.5x untraced.

    python benchmarks/kombu_overhead.py [--messages 10000] [--rounds 5] [--markdown]
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
from _harness import TABLE_HEADER, SpanCounter, fmt_spread, paired_ratios, paired_rounds, summary_row  # noqa: E402

MODES = ("untraced", "propagation", "batch", "per-message")

CHILD = r'''
import json, sys, time, uuid
mode, n = sys.argv[1], int(sys.argv[2])
import pipetrace
from kombu import Connection, Exchange, Queue
from pipetrace.integrations import kombu as pk
from pipetrace.integrations.kombu.consumer import start_process_span
if mode != "untraced":
    pipetrace.configure()
    pk.instrument(spans=(mode == "per-message"))
def warm_up(conn):
    """Outside the window: the first-use imports of the publish and consume paths (``instrument()`` does
    some of them for the traced modes; without this the untraced mode pays them inside its window)."""
    wq = Queue("warm-" + uuid.uuid4().hex[:6], Exchange("warm", type="direct"), routing_key="warm")
    with conn.Producer() as prod:
        for i in range(200):
            prod.publish({"i": i}, exchange=wq.exchange, routing_key="warm", declare=[wq])
    for batch in pk.consume_batches(conn, wq, 100, timeout=0.2):
        for m in batch:
            m.ack()


name = "bench-" + uuid.uuid4().hex[:6]
q = Queue(name, Exchange(name, type="direct"), routing_key=name)
with Connection("memory://") as conn:
    warm_up(conn)
    if mode != "untraced":
        pipetrace.force_flush(60)
    t0, c0 = time.perf_counter(), time.process_time()
    with conn.Producer() as prod:
        for i in range(n):
            prod.publish({"i": i}, exchange=q.exchange, routing_key=name, declare=[q])
    seen = 0
    for batch in pk.consume_batches(conn, q, 100, timeout=0.2):
        if mode == "batch":
            with pk.process_batch(batch):
                for m in batch:
                    m.ack()
        elif mode == "per-message":
            for m in batch:
                span = start_process_span(m, connection=conn)
                m.ack()
                span.end()
        else:
            for m in batch:
                m.ack()
        seen += len(batch)
    if mode != "untraced":
        pipetrace.force_flush(60)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
assert seen == n, seen
print(json.dumps({"mode": mode, "seconds": elapsed, "cpu": cpu}))
'''


BEFORE = {"propagation": "1.01× (best of 3, sequential)", "batch": "1.09× (best of 3, sequential)",
          "per-message": "3.64× (docs/kombu.md)"}


def run(mode: str, n: int, endpoint: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one mode's subprocess."""
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, PIPETRACE_HOME=home, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
        env.pop("PIPETRACE_AUTO", None)
        out = subprocess.run([sys.executable, "-c", CHILD, mode, str(n)], env=env, capture_output=True,
                             text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        return float(row["seconds"]), float(row["cpu"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    with SpanCounter() as receiver:
        runs, loads = paired_rounds(MODES, args.rounds, lambda mode, _r: run(mode, args.messages, receiver.endpoint))
        received = receiver.spans
    print(f"kombu memory://, {args.messages} messages, {args.rounds} paired rounds (rotating order), "
          f"exporters store + otlp; {received} spans received in all")
    rows = []
    for k, label in ((0, "wall"), (1, "CPU")):
        base = [r[k] for r in runs["untraced"]]
        print(f"  {label}: untraced {fmt_spread(base, '.3f')} s")
        for mode in MODES[1:]:
            values = [r[k] for r in runs[mode]]
            ratios = paired_ratios(values, base)
            print(f"    {mode:12s} {fmt_spread(values, '.3f')} s  ratio per round {fmt_spread(ratios)}")
            if mode != "per-message" or k == 0:
                rows.append(summary_row(f"kombu {mode} {label} / untraced (`kombu_overhead.py --rounds {args.rounds}`)",
                                        BEFORE[mode] if k == 0 else "not measured",
                                        f"**{statistics.median(ratios):.2f}×**", "untraced",
                                        f"{min(ratios):.2f}–{max(ratios):.2f}", loads))
    prop = statistics.median(paired_ratios([r[0] for r in runs["propagation"]], [r[0] for r in runs["untraced"]]))
    batch = statistics.median(paired_ratios([r[0] for r in runs["batch"]], [r[0] for r in runs["untraced"]]))
    print(f"goals (wall): propagation <= 1.3x: {prop <= 1.3}; batch <= 1.5x: {batch <= 1.5}")
    if args.markdown:
        print(TABLE_HEADER)
        print("\n".join(rows))


if __name__ == "__main__":
    main()
