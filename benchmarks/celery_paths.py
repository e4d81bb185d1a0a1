"""Celery per-task work of the instrumentation itself, measured two ways that a noisy 2-core machine does
not blur: untraced, opentelemetry-instrumentation-celery (the reference) and pipetrace, side by side.

The end-to-end benchmark (``celery_overhead.py``) is the throughput a user sees, but its per-mode medians
move by ±200 µs/task between runs here, more than the difference being measured. This one runs the
same Celery code paths in one process — a real ``apply_async`` onto Redis (publish side) and Celery's own
``trace_task`` with the Redis result backend (task side, what a prefork child runs per message, signals
included) — each mode's task reading the message its own producer wrote:

* ``--measure instructions`` (default): CPU instructions per task counted by valgrind's callgrind, which
  is deterministic: each (side, mode) runs twice, with ``--low`` and ``--high`` tasks, and the
  difference divided by the extra tasks is the per-task count (start-up cancels out).
* ``--measure cold``: time per task with the CPU caches evicted before every call (a 24 MiB copy), as
  in a real worker where the broker round trip and the other processes leave them cold; on the
  ``memory://`` broker and the in-memory result backend (no I/O time in the figure); the modes take
  turns in blocks, medians over the blocks. Work handed to a background thread (pipetrace's task spans
  made after the task) is done at the end of each block and its time per task added.

Both count everything the process does: callgrind counts every thread and the exit's flush too.

Both traced modes export, as deployed: the reference is set up as its docs show a user — its own plain
SDK ``TracerProvider`` + ``BatchSpanProcessor`` + OTLP/HTTP exporter, not pipetrace's provider — and
pipetrace runs with its default processing (redaction on) and ``PIPETRACE_EXPORTERS`` (default
``otlp``); both export to one local receiver that counts the spans (printed). In ``cold``, each block
ends with a flush of the mode's provider, timed and added per task (the export a background thread did
during the block is not in that figure; callgrind's count has all of it).

Goal (issue 4): pipetrace's added work per task <= half of the reference's.

    python benchmarks/celery_paths.py [--measure instructions|cold] [--low 50] [--high 350] [--rounds 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import TABLE_HEADER, SpanCounter, fmt_spread, load, summary_row  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP_DIR = ROOT / "example_dags" / "celery"
MODES = ("untraced", "otel", "pipetrace")
SIDES = ("publish", "task")


def _environment(queue: str) -> None:
    os.environ.setdefault("PIPETRACE_EXPORTERS", "otlp")
    os.environ.setdefault("PIPETRACE_EXAMPLE_BROKER", "redis://127.0.0.1:6379/12")
    os.environ.setdefault("PIPETRACE_EXAMPLE_BACKEND", "redis://127.0.0.1:6379/13")
    os.environ["PIPETRACE_EXAMPLE_QUEUE"] = queue
    sys.path.insert(0, str(APP_DIR))


class _Modes:
    """Switches the instrumentation of this process between the three modes."""

    def __init__(self) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.reference = CeleryInstrumentor()
        self.provider = TracerProvider()  # the reference's own, as its docs show (endpoint from the env)
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))

    def flush(self, mode: str) -> None:
        """Drain the mode's background work: deferred spans and the export queue."""
        if mode == "otel":
            self.provider.force_flush()
        elif mode == "pipetrace":
            import pipetrace

            pipetrace.force_flush(60)

    def on(self, mode: str) -> None:
        if mode == "otel":
            self.reference.instrument(tracer_provider=self.provider)
        elif mode == "pipetrace":
            import pipetrace
            import pipetrace.integrations.celery as pc
            import pipetrace.integrations.kombu as pk

            pipetrace.get_tracer()  # pipetrace's provider, exporters as configured
            pc.instrument()
            pk.instrument()  # what ``pipetrace run`` enables in a Celery process

    def off(self, mode: str) -> None:
        if mode == "otel":
            self.reference.uninstrument()
        elif mode == "pipetrace":
            import pipetrace.integrations.celery as pc
            import pipetrace.integrations.kombu as pk

            pc.uninstrument()
            pk.uninstrument()


def _message_headers(noop: Any) -> dict[str, Any]:
    """The headers this process's producer writes (traced or not), for the task side to read."""
    from celery import signals

    captured: dict[str, Any] = {}

    def capture(headers: Any = None, **_: Any) -> None:
        captured.update(headers or {})

    signals.before_task_publish.connect(capture, weak=False)  # after every tracing receiver
    try:
        noop.apply_async()
    finally:
        signals.before_task_publish.disconnect(capture)
    return captured


def _request(headers: dict[str, Any], queue: str) -> tuple[str, dict[str, Any]]:
    task_id = str(uuid.uuid4())
    request = dict(headers)
    request.update(id=task_id, root_id=task_id, reply_to=str(uuid.uuid4()), correlation_id=task_id,
                   delivery_info={"exchange": "", "routing_key": queue, "priority": 0, "redelivered": False},
                   hostname="bench@host", is_eager=False, args=(), kwargs={})
    return task_id, request


def _purge(app: Any, queue: str) -> None:
    with app.connection_for_write() as conn:
        conn.default_channel.client.delete(queue)


def run_one(mode: str, side: str, n: int) -> None:
    """In a child process: ``n`` publishes or task runs in ``mode`` (counted by callgrind from outside)."""
    queue = f"paths-{uuid.uuid4().hex[:6]}"
    _environment(queue)
    from celery.app.trace import build_tracer
    from pipeline_app import app, noop

    modes = _Modes()
    modes.on(mode)
    headers = _message_headers(noop)
    try:
        if side == "publish":
            for _ in range(n):
                noop.delay()
        else:
            trace_task = build_tracer(noop.name, noop, app=app)
            for _ in range(n):
                task_id, request = _request(headers, queue)
                trace_task(task_id, (), {}, request)
        modes.flush(mode)  # inside the count: the export of every span
    finally:
        _purge(app, queue)


def _count(mode: str, side: str, n: int, out_dir: Path) -> int:
    out = out_dir / f"callgrind.{side}.{mode}.{n}"
    env = dict(os.environ, PYTHONHASHSEED="0")  # the same dict layouts in every run: repeatable counts
    proc = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
                           "--run", mode, side, str(n)], capture_output=True, text=True, cwd=ROOT, check=False, env=env)
    for line in proc.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1].strip())
    raise RuntimeError(f"callgrind gave no count for {mode}/{side}:\n{proc.stderr[-2000:]}")


def instructions(low: int, high: int) -> dict[str, dict[str, float]]:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: use --measure cold, or install valgrind")
    receiver = SpanCounter().__enter__()
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
    out_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"pipetrace-callgrind-{os.getpid()}"
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(mode, side, n) for side in SIDES for mode in MODES for n in (low, high)]
    done = 0
    counts: dict[tuple[str, str, int], int] = {}
    with ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 2))) as pool:
        futures = {pool.submit(_count, *job, out_dir): job for job in jobs}
        for future, job in futures.items():
            counts[job] = future.result()
            done += 1
            print(f"  [{done}/{len(jobs)}] {job[1]:7s} {job[0]:10s} {job[2]:4d} tasks: {counts[job]:,} instructions",
                  file=sys.stderr, flush=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    print(f"  spans received: {receiver.spans}", file=sys.stderr)
    receiver.__exit__()
    return {side: {mode: (counts[(mode, side, high)] - counts[(mode, side, low)]) / (high - low) for mode in MODES}
            for side in SIDES}


def cold(rounds: int, block: int) -> dict[str, dict[str, float]]:
    queue = f"paths-{uuid.uuid4().hex[:6]}"
    os.environ["PIPETRACE_EXAMPLE_BROKER"] = "memory://"  # only the hooks' time is taken: no broker I/O to wait on
    os.environ["PIPETRACE_EXAMPLE_BACKEND"] = "cache+memory://"
    _environment(queue)
    from celery.app.trace import build_tracer
    from pipeline_app import app, noop

    receiver = SpanCounter().__enter__()
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
    modes = _Modes()
    junk, zeros = bytearray(24 << 20), bytes(24 << 20)
    clock = time.perf_counter_ns
    result: dict[str, dict[str, float]] = {}
    for side in SIDES:
        blocks: dict[str, list[float]] = {m: [] for m in MODES}
        for r in range(rounds):
            for mode in MODES if r % 2 == 0 else MODES[::-1]:
                modes.on(mode)
                headers = _message_headers(noop)
                trace_task = build_tracer(noop.name, noop, app=app)
                samples = []
                for i in range(block + 5):
                    task_id, request = _request(headers, queue)
                    junk[:] = zeros  # evict the caches
                    t0 = clock()
                    if side == "publish":
                        noop.delay()
                    else:
                        trace_task(task_id, (), {}, request)
                    if i >= 5:
                        samples.append(clock() - t0)
                t0 = clock()
                modes.flush(mode)  # the block's deferred span work and export, per task
                deferred = (clock() - t0) / (block + 5)
                blocks[mode].append((statistics.median(samples) + deferred) / 1e3)
                modes.off(mode)
            if side == "publish":
                with app.connection_for_write() as conn:
                    conn.default_channel.queue_purge(queue)
        result[side] = {m: statistics.median(v) for m, v in blocks.items()}
        for m, v in blocks.items():
            print(f"  {side:7s} {m:10s} per block: {fmt_spread(v, '.1f')} us", file=sys.stderr)
    print(f"  spans received: {receiver.spans}", file=sys.stderr)
    receiver.__exit__()
    return result


def _side_ratio(per: dict[str, float]) -> float:
    return (per["pipetrace"] - per["untraced"]) / (per["otel"] - per["untraced"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--measure", choices=("instructions", "cold"), default="instructions")
    ap.add_argument("--low", type=int, default=50)
    ap.add_argument("--high", type=int, default=350)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--block", type=int, default=100)
    ap.add_argument("--markdown", action="store_true", help="end with the closing-note table row")
    ap.add_argument("--run", nargs=3, metavar=("MODE", "SIDE", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        run_one(args.run[0], args.run[1], int(args.run[2]))
        return
    loads = load()
    per = instructions(args.low, args.high) if args.measure == "instructions" else cold(args.rounds, args.block)
    unit = "k instructions" if args.measure == "instructions" else "us (cold caches)"
    scale = 1e3 if args.measure == "instructions" else 1.0
    where = "Redis broker and result backend" if args.measure == "instructions" else "memory:// broker, cache backend"
    print(f"celery per-task work ({args.measure}; {where}): publish = apply_async, task = Celery's trace_task")
    total = {m: 0.0 for m in MODES}
    for side in SIDES:
        base = per[side]["untraced"]
        for mode in MODES:
            added = per[side][mode] - base
            total[mode] += added
            print(f"  {side:7s} {mode:10s} {per[side][mode] / scale:8.1f} {unit} per task, added {added / scale:7.1f}")
        ratio = (per[side]["pipetrace"] - base) / (per[side]["otel"] - base)
        print(f"  {side:7s} pipetrace added / reference added: {ratio:.2f}")
    print(f"publish + task: pipetrace added / reference added: {total['pipetrace'] / total['otel']:.2f} (goal <= 0.5)")
    if args.markdown:
        before = "0.45 (exporters none, reference under pipetrace's provider)" if args.measure == "instructions" \
            else "0.45–0.50 (exporters none, reference under pipetrace's provider)"
        rounds = f" --rounds {args.rounds}" if args.measure == "cold" else ""
        print(TABLE_HEADER)
        print(summary_row(f"Celery per-task work ({args.measure}), pipetrace / reference added (`celery_paths.py "
                          f"--measure {args.measure}{rounds}`)", before,
                          f"**{total['pipetrace'] / total['otel']:.2f}**",
                          f"otel-instrumentation-celery, plain SDK + BSP + OTLP/HTTP: {total['otel'] / scale:.1f} "
                          f"{unit} added",
                          "per side: " + ", ".join(f"{side} {_side_ratio(per[side]):.2f}" for side in SIDES),
                          [loads, load()]))


if __name__ == "__main__":
    main()
