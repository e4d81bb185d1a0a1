"""kombu overhead on ``memory://``: 10,000 small messages published and consumed (in batches of 100),
side by side in one run: untraced, propagation only, batch spans, per-message spans.

Each mode runs in a fresh subprocess (clean instrumentation state) writing to the embedded store in a
temporary PIPETRACE_HOME; time includes the final flush. Prints times and ratios to untraced.
Goal (issue 4): propagation only <= 1.3x, batch spans <= 1.5x untraced.

    python benchmarks/kombu_overhead.py [--messages 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

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
name = "bench-" + uuid.uuid4().hex[:6]
q = Queue(name, Exchange(name, type="direct"), routing_key=name)
with Connection("memory://") as conn:
    t0 = time.perf_counter()
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
    elapsed = time.perf_counter() - t0
assert seen == n, seen
print(json.dumps({"mode": mode, "seconds": elapsed}))
'''


def run(mode: str, n: int) -> float:
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, PIPETRACE_HOME=home)
        env.pop("PIPETRACE_AUTO", None)
        out = subprocess.run([sys.executable, "-c", CHILD, mode, str(n)], env=env, capture_output=True,
                             text=True, check=True)
        return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    best = {m: min(run(m, args.messages) for _ in range(args.repeat)) for m in MODES}
    base = best["untraced"]
    print(f"kombu memory://, {args.messages} messages, best of {args.repeat}")
    for mode in MODES:
        print(f"  {mode:12s} {best[mode]:7.3f} s  {best[mode] / base:5.2f}x untraced")
    print(f"goals: propagation <= 1.3x: {best['propagation'] / base <= 1.3}; batch <= 1.5x: "
          f"{best['batch'] / base <= 1.5}")


if __name__ == "__main__":
    main()
