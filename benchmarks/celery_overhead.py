"""Celery overhead: N no-op tasks through a real prefork worker (concurrency 2) on Redis, side by side
in one run: untraced, opentelemetry-instrumentation-celery, pipetrace (``pipetrace run --``).

Both traced modes use pipetrace's tracer provider with the same exporters (``--exporters``, default
``none``: spans are made and processed but not written, which isolates the instrumentation cost from
the exporter's; ``store`` adds the SQLite writes each worker child does in its background thread). The time
is first publish to last result; the added time per task is (mode - untraced) / N. Goal (issue 4):
pipetrace's added time per task <= half of the reference's.

    python benchmarks/celery_overhead.py [--tasks 2000] [--db 14]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP_DIR = ROOT / "example_dags" / "celery"
BIN = Path(sys.executable).parent

PRODUCER = r'''
import json, sys, time
from pipeline_app import noop
n = int(sys.argv[1])
t0 = time.perf_counter()
results = [noop.delay() for _ in range(n)]
for r in results:
    r.get(timeout=300)
print(json.dumps({"seconds": time.perf_counter() - t0}))
'''


def run(mode: str, n: int, db: int, exporters: str) -> float:
    with tempfile.TemporaryDirectory() as home:
        queue = f"bench-{uuid.uuid4().hex[:6]}"
        env = dict(os.environ, PIPETRACE_HOME=home, PIPETRACE_EXAMPLE_QUEUE=queue,
                   PIPETRACE_EXAMPLE_BROKER=f"redis://127.0.0.1:6379/{db}",
                   PIPETRACE_EXAMPLE_BACKEND=f"redis://127.0.0.1:6379/{db + 1}",
                   PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", PIPETRACE_EXPORTERS=exporters)
        env.pop("PIPETRACE_AUTO", None)
        if mode == "otel":
            env["PIPETRACE_EXAMPLE_OTEL"] = "1"
        prefix = [str(BIN / "pipetrace"), "run", "--"] if mode == "pipetrace" else []
        log = Path(home) / "worker.log"
        with open(log, "wb") as fh:
            worker = subprocess.Popen(
                [*prefix, str(BIN / "celery"), "-A", "pipeline_app", "worker", "-P", "prefork", "-c", "2", "-Q",
                 queue, "-n", f"{queue}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "-l", "warning"], cwd=APP_DIR, env=env, stdout=fh, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            time.sleep(1)
            subprocess.run([str(BIN / "celery"), "-A", "pipeline_app", "inspect", "ping", "-d", f"{queue}@"
                            f"{os.uname().nodename}", "-t", "30"], cwd=APP_DIR, env=env, capture_output=True)
            out = subprocess.run([*prefix, str(BIN / "python"), "-c", PRODUCER, str(n)], cwd=APP_DIR, env=env,
                                 capture_output=True, text=True, check=True)
            return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--db", type=int, default=14)
    ap.add_argument("--exporters", default="none")
    args = ap.parse_args()
    times = {mode: run(mode, args.tasks, args.db, args.exporters) for mode in ("untraced", "otel", "pipetrace")}
    base = times["untraced"]
    added = {m: (t - base) / args.tasks * 1e6 for m, t in times.items()}
    print(f"celery on redis, {args.tasks} no-op tasks, prefork -c 2, exporters={args.exporters}")
    for mode, t in times.items():
        print(f"  {mode:10s} {t:7.2f} s  {args.tasks / t:8.0f} tasks/s  {t / base:5.2f}x  "
              f"added {added[mode]:7.1f} us/task")
    ratio = added["pipetrace"] / added["otel"] if added["otel"] > 0 else float("nan")
    print(f"pipetrace added time / reference added time = {ratio:.2f} (goal <= 0.5)")


if __name__ == "__main__":
    main()
