"""Another process holding the store's write lock: shutdown still ends within the flush bound (not
SQLite's 60 s busy timeout), a rate-limited warning says the store is locked, and the count of lost spans
at exit is exact, the batch in a running export included. OpenTelemetry's per-message baggage warnings
go through pipetrace's limiter."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pipetrace
import pytest
from opentelemetry import propagate
from pipetrace.store import SpanStore

N = 2000
BOUND_S = 3.0

TRACED = f"""
import json, logging, sys, time
import pipetrace
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")
pipetrace.configure(exporters="store", export_interval_s=0.05, flush_timeout_s={BOUND_S})
for i in range({N}):
    with pipetrace.task_span("python", "locked", "lock-run", f"t{{i}}"):
        pass
time.sleep(float(sys.argv[1]))  # exports run (and wait on the lock) meanwhile
from pipetrace.processing import runtime
processor = runtime._state.processor  # stats() of the chain that shutdown detaches
start = time.monotonic()
pipetrace.shutdown()
print(json.dumps({{"shutdown_s": time.monotonic() - start, "stats": processor.stats()}}))
"""

HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
print("released", flush=True)
time.sleep(60)
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    store = SpanStore(tmp_path / "traces.db")
    assert store.count() == 0  # the schema exists before another process locks it
    store.close()
    return tmp_path


def _hold_lock(db: Path, seconds: float) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def _run_traced(home: Path, wait_s: float) -> tuple[dict, str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPETRACE_", "OTEL_"))}
    env["PIPETRACE_HOME"] = str(home)
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", TRACED, str(wait_s)], env=env, capture_output=True, text=True,
                         timeout=120)
    elapsed = time.monotonic() - start
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr, elapsed


def test_locked_store_shutdown_is_bounded_and_counts_every_lost_span(home: Path) -> None:
    holder = _hold_lock(home / "traces.db", 120)
    try:
        result, stderr, _ = _run_traced(home, 5.0)
    finally:
        holder.kill()
        holder.wait()
    print(f"\nshutdown with the store locked: {result['shutdown_s']:.2f} s (flush bound {BOUND_S} s)")
    assert result["shutdown_s"] <= BOUND_S + 1.0, result
    store = result["stats"]["store"]
    assert store["exported"] == 0 and store["dropped"] + store["failed"] == N, store
    (lost,) = [ln for ln in stderr.splitlines() if "lost" in ln and "at shutdown" in ln]
    assert f"lost {N} spans at shutdown" in lost, lost  # queued + kept for retry + in the running export
    locked = [ln for ln in stderr.splitlines() if "is locked by another process" in ln]
    assert len(locked) == 1, stderr  # several failed attempts in 5+ s, one warning
    assert SpanStore(home / "traces.db").count() == 0


def test_store_unlocked_before_the_bound_keeps_every_span(home: Path) -> None:
    holder = _hold_lock(home / "traces.db", 2.5)
    try:
        result, stderr, _ = _run_traced(home, 0.5)
    finally:
        holder.kill()
        holder.wait()
    assert result["shutdown_s"] <= BOUND_S + 1.0, result
    store = result["stats"]["store"]
    assert store["exported"] == N and store["dropped"] == 0 and store["failed"] == 0, (store, stderr)
    assert "at shutdown" not in stderr
    assert SpanStore(home / "traces.db").count() == N


@pytest.fixture
def baggage_log(traced) -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("opentelemetry.baggage.propagation")
    handler = Keep(logging.WARNING)
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_oversized_baggage_warnings_are_rate_limited(baggage_log: list[logging.LogRecord]) -> None:
    pipetrace.configure(exporters="store")  # installs the limiter on OpenTelemetry's baggage logger
    header = ",".join(f"k{i}={'v' * 100}" for i in range(100))  # > 8192 bytes: over the W3C limit
    for _ in range(500):
        propagate.extract({"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01", "baggage": header})
    assert len(baggage_log) == 1, [r.getMessage()[:80] for r in baggage_log]
    assert "pipetrace: at most one such warning per 60 s" in baggage_log[0].getMessage()
