"""One "host" of a simulated fleet: its own process and PIPETRACE_HOME, writing through the public API.

    python fleet_worker.py fault HOME N GO_DIR        # 3 phases of N tasks, waiting for GO_DIR/go1, go2
                                                      # (the fault is injected in phase 1)
    python fleet_worker.py runs HOME HOST RUNS FAIL   # task spans of runs 0..RUNS-1 (HOST's share)
    python fleet_worker.py ends HOME RUNS FAIL        # the run spans (this host sees every run end)

A run ``r{i}`` fails when ``i % FAIL == 0``; every host writes one task of every run, so a run's trace
holds spans from every host. Prints one JSON line at the end.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import pipetrace
from pipetrace import attributes as A
from pipetrace.store import SpanStore


def fault(home: str, n: int, go: Path) -> dict[str, object]:
    pipetrace.configure(home=home, exporters="store", export_interval_s=0.05)
    durations: list[float] = []
    for phase in range(3):
        if phase:
            while not (go / f"go{phase}").exists():
                time.sleep(0.02)
        for i in range(n):
            t0 = time.perf_counter()
            with pipetrace.task_span("python", "fault", "r1", f"t{phase}-{i}"):
                pass
            durations.append(time.perf_counter() - t0)
            time.sleep(0.002)
        print(f"phase {phase}", flush=True)
    now = time.time()
    pipetrace.run_span("python", "fault", "r1", start=now - 10, end=now, result=A.RESULT_SUCCESS)
    buffer = SpanStore.local(Path(home) / "buffer.db")
    deadline = time.monotonic() + 60
    left = -1
    while time.monotonic() < deadline:
        pipetrace.force_flush(10)
        left = buffer.count() if buffer.path.exists() else 0
        if left == 0:
            break
        time.sleep(0.2)
    stats = pipetrace.stats()
    pipetrace.shutdown(10)
    phases = [sorted(durations[k * n:(k + 1) * n]) for k in range(3)]  # per phase, for added latency
    durations.sort()
    return {"p50_ms": durations[len(durations) // 2] * 1e3, "max_ms": durations[-1] * 1e3, "left": left,
            "stats": stats.get("store", {}), "buffer": stats.get("store_buffer", {}),
            "lost": stats.get("lost", {}),
            "phase_ms": [[p[len(p) // 2] * 1e3, p[int(0.95 * (len(p) - 1))] * 1e3, p[-1] * 1e3] for p in phases]}


def runs(home: str, host: int, count: int, fail_every: int) -> dict[str, object]:
    pipetrace.configure(home=home, export_interval_s=0.05)
    for i in range(count):
        failed = i % fail_every == 0 and host == 1  # the failing task runs on host 1
        try:
            with pipetrace.task_span("python", "fleet", f"r{i}", f"task-h{host}"):
                if failed:
                    raise RuntimeError("boom")
        except RuntimeError:
            pass
    ok = pipetrace.force_flush(60)
    pipetrace.shutdown(30)
    return {"flushed": ok}


def ends(home: str, count: int, fail_every: int) -> dict[str, object]:
    pipetrace.configure(home=home, export_interval_s=0.05)
    now = time.time()
    for i in range(count):
        # the run window also covers the straggler host's tasks, which start after this process ends
        pipetrace.run_span("python", "fleet", f"r{i}", start=now - 120 + i * 0.001, end=now + 120 + i * 0.001,
                           result=A.RESULT_FAILURE if i % fail_every == 0 else A.RESULT_SUCCESS)
    ok = pipetrace.force_flush(60)
    pipetrace.shutdown(30)
    return {"flushed": ok}


def main() -> None:
    logging.basicConfig(level=logging.DEBUG if os.environ.get("FLEET_DEBUG") else logging.WARNING)
    mode, home = sys.argv[1], sys.argv[2]
    if mode == "fault":
        out = fault(home, int(sys.argv[3]), Path(sys.argv[4]))
    elif mode == "runs":
        out = runs(home, int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        out = ends(home, int(sys.argv[3]), int(sys.argv[4]))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
