"""Prefect run telemetry per task run in machine instructions, pipetrace against Prefect's native OTel
telemetry, counted by callgrind: deterministic to about 1 %, so the goal "pipetrace as deployed is cheaper
than native telemetry" reads the same on a quiet laptop and on a loaded 2-core machine, where
``prefect_overhead.py``'s CPU ratios move ±30 % from round to round.

What runs (each mode in its own process, under ``valgrind --tool=callgrind``, every thread counted):
each task run is replayed through Prefect's telemetry seam as the task engine drives it — a fresh
``TaskRun`` and two fresh states (real Prefect objects: unique run and state ids, as a real flow makes
them), ``start_span``, ``update_state`` (Running, Completed), ``end_span_on_success`` — then the export
is flushed, so the background work (batching, redaction, store, encoding, the OTLP post) is counted.

* ``off``: Prefect as installed, no OTel SDK (its telemetry's no-op tracer). The base the others are read
  against: the Prefect objects cost the same in every mode.
* ``native``: Prefect's ``RunTelemetry`` with the SDK set up as OTel's docs tell a user: a plain
  ``TracerProvider`` + ``BatchSpanProcessor`` + OTLP/HTTP exporter, no pipetrace.
* ``pipetrace``: pipetrace instrumented as deployed (``instrument()``, redaction on, exporters
  ``store,otlp``: the embedded store and OTLP); ``pt-otlp``: the same exporting OTLP only, native's one
  destination. With ``--before <checkout>``, the two again from that checkout's ``.venvs/prefect``.

Both traced sides post OTLP/HTTP to the same local receiver in this process (not counted), which counts
the spans (completeness printed). Callgrind counts only a window: it opens when the
process is warm (200 task runs replayed and flushed) and closes after the measured runs' flush, so
start-up, imports and shutdown are not in it. "Added" is a mode's instructions per task run minus
``off``'s.

What it leaves out: Prefect's engine, its API calls and the ephemeral server (the same in every mode; see
``prefect_overhead.py`` for whole-flow wall and CPU), and pipetrace's map/submit hooks (data-flow links),
which a replay of the seam does not drive. Instructions are not time: cache misses and memory stalls are
not in them. Needs ``valgrind`` (Debian package ``valgrind``); a few minutes a side.

``--flows K`` counts whole flows instead (``prefect_overhead.py``'s 50-task flow against a real ephemeral
server; K flows after one), off / native / pipetrace, in the flow's process: the engine's work and the
telemetry's, every thread. The ephemeral server is not counted. Followed into its process by valgrind, its
count was not the traced work's: its background services wake on wall-clock timers, which valgrind
stretches, so it grew with how slowly the window ran (native's tree doubled off's). Its request handling is
the same in every mode and would only add to the denominator, so "pipetrace / off" here is stricter than
``prefect_overhead.py``'s whole-tree CPU ratio (the ≤ 1.05× goal), not the same measure.

    .venvs/prefect/bin/python benchmarks/prefect_replay_callgrind.py [--runs 1000] [--before <checkout>]
    .venvs/prefect/bin/python benchmarks/prefect_replay_callgrind.py --flows 2
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import SpanCounter  # noqa: E402
from prefect_overhead import ENGINE, FLOW, NATIVE  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WARM = 200

CHILD = NATIVE + r'''
import gc, os, sys
mode, total = sys.argv[1], int(sys.argv[2])  # (argv[3]: the warm-up's task runs)
flush = lambda: None
if mode in ("pipetrace", "pt-otlp"):
    import pipetrace
    pipetrace.configure(exporters="store,otlp" if mode == "pipetrace" else "otlp",
                        otlp_endpoint=os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"])
    from pipetrace.integrations.prefect import hooks, instrument
    instrument()
    flush = lambda: pipetrace.force_flush(60)
elif mode == "native":
    flush = native_telemetry()
import uuid
from prefect.client.schemas import FlowRun, TaskRun
from prefect.context import FlowRunContext
from prefect.states import Completed, Running
''' + ENGINE + r'''


flow_run = FlowRun(id=uuid.uuid4(), name="smart-lemur", flow_id=uuid.uuid4())
if mode in ("pipetrace", "pt-otlp"):
    from pipetrace.adapter.runs import Run
    from pipetrace.identity import RunIdentity
    from pipetrace.integrations.prefect import runs
    info = runs.flows.add(Run(RunIdentity("prefect", "bench_prefect", str(flow_run.id), None)))
    info.start_span({})
    runs.flow_info_for_context = lambda flow_ctx=None: info  # the flow run the tasks belong to


def one(i):
    engine = Engine()
    run = TaskRun(flow_run_id=flow_run.id, task_key="work-3f2a1c", dynamic_key=str(i), name=f"work-{i % 1000:03x}",
                  task_inputs={"i": []}, tags=[], labels={})
    if mode in ("pipetrace", "pt-otlp"):
        hooks._post_init(lambda: None, engine, (), {})
    seam = engine._telemetry
    seam.start_span(run, None, {"i": i})
    seam.update_state(Running())
    seam.update_state(Completed())
    seam.end_span_on_success()


for i in range(int(sys.argv[3])):  # warm-up: imports, first-call caches, the export threads started
    one(i)
flush()
gc.collect()
print("ready", flush=True)
sys.stdin.readline()  # the counting window opens
for i in range(total):
    one(i)
flush()
gc.collect()
print("done", flush=True)
sys.stdin.readline()  # … and closes before the process exits
'''


FLOW_CHILD = NATIVE + r'''
import os, sys
mode, flows = sys.argv[1], int(sys.argv[2])  # (argv[3]: the warm-up's flows)
n = 50  # prefect_overhead.py's flow: 25 mapped, 24 submitted, one fan-in
flush = lambda: None
if mode == "pipetrace":
    import pipetrace
    from pipetrace.integrations.prefect import instrument
    pipetrace.configure(exporters="store,otlp", otlp_endpoint=os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"])
    instrument()
    flush = lambda: pipetrace.force_flush(60)
elif mode == "native":
    flush = native_telemetry()
''' + FLOW + r'''

for _ in range(int(sys.argv[3])):  # warm-up: the ephemeral server, imports, first-run caches
    bench()
    flush()
print("ready", flush=True)
sys.stdin.readline()
for _ in range(flows):
    bench()
    flush()
print("done", flush=True)
sys.stdin.readline()
'''


def _control(pid: int, *args: str) -> None:
    """``callgrind_control`` for one process, by pid: never another valgrind run on the machine."""
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True, timeout=600)


def instructions(python: Path, mode: str, count: int, warm: int, endpoint: str, child: str = CHILD) -> int:
    """Instructions in a counting window only: ``count`` task runs (or flows) and their flush, after ``warm``
    that are not counted; every thread of the process. Callgrind starts with counting off;
    ``callgrind_control`` turns it on when the child is warm, and at the end turns it off and dumps the counts,
    so start-up, imports and shutdown are left out without a second run to subtract."""
    with tempfile.TemporaryDirectory(prefix="pipetrace-bench-callgrind-") as home:
        env = dict(os.environ, PREFECT_HOME=home, PIPETRACE_HOME=os.path.join(home, "pt"), PYTHONHASHSEED="0",
                   PREFECT_LOGGING_LEVEL="WARNING", PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="900",
                   OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
        for name in ("PREFECT_PLUGINS_ENABLED", "PIPETRACE_AUTO", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            env.pop(name, None)
        dumps = Path(home) / "callgrind"
        dumps.mkdir()
        proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                                 f"--callgrind-out-file={dumps}/cg.%p", f"--log-file={dumps}/log.%p",
                                 str(python), "-c", child, mode, str(count), str(warm)], env=env, cwd=python.parents[3],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{mode} ({python}): did not start")
            _control(proc.pid, "-i", "on")
            proc.stdin.write("next\n")
            proc.stdin.flush()
            if proc.stdout.readline().strip() != "done":
                raise RuntimeError(f"{mode} ({python}): did not finish")
            _control(proc.pid, "-i", "off")
            for old in dumps.glob("cg.*"):
                old.unlink()  # what start-up wrote (nothing counted), so only the window's dumps are summed
            _control(proc.pid, "--dump")
            proc.communicate(timeout=900)  # (closes stdin: the child exits)
        finally:
            if proc.poll() is None:
                proc.kill()
        if proc.returncode != 0:
            raise RuntimeError(f"{mode} ({python}): exit {proc.returncode}")
        total = 0
        for dump in dumps.glob("cg.*"):
            found = re.search(r"^totals: (\d+)", dump.read_text(errors="replace"), re.M)  # (summary: 0 in a dump)
            total += int(found.group(1)) if found else 0
    if total == 0:
        raise RuntimeError(f"{mode} ({python}): no instructions counted")
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1000, help=f"task runs counted (after {WARM} that are not)")
    ap.add_argument("--before", type=Path, help="another checkout (with its .venvs/prefect): its pipetrace sides too")
    ap.add_argument("--flows", type=int, default=0, metavar="K",
                    help="instead: whole 50-task flows (a real ephemeral server), K counted after one")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install -y valgrind)")
    if args.flows:
        flows(args.flows)
        return
    here = Path(sys.executable)
    sides: dict[str, tuple[Path, str]] = {m: (here, m) for m in ("off", "native", "pipetrace", "pt-otlp")}
    if args.before is not None:
        before = args.before.resolve() / ".venvs" / "prefect" / "bin" / "python"
        sides.update({"before pipetrace": (before, "pipetrace"), "before pt-otlp": (before, "pt-otlp")})
    per_run: dict[str, float] = {}
    traced = 0
    with SpanCounter() as receiver:
        for label, (python, mode) in sides.items():
            per_run[label] = instructions(python, mode, args.runs, WARM, receiver.endpoint) / args.runs
            traced += WARM + args.runs if mode != "off" else 0
            print(f"  {label:17s} {per_run[label]:>10,.0f} instructions a task run", flush=True)
        spans = receiver.spans
    off = per_run["off"]
    added = {label: value - off for label, value in per_run.items() if label != "off"}
    print(f"Prefect telemetry per task run, instructions (callgrind, every thread; {args.runs} task runs replayed "
          f"through the seam after {WARM}; spans at the receiver {spans}/{traced})")
    for label, value in added.items():
        print(f"  added by {label:17s} {value:>10,.0f}   / native {value / added['native']:.3f}")


def flows(k: int) -> None:
    """``--flows``: instructions per 50-task flow of the flow's process, pipetrace and native against off."""
    here = Path(sys.executable)
    per_flow: dict[str, float] = {}
    with SpanCounter() as receiver:
        for mode in ("off", "native", "pipetrace"):
            per_flow[mode] = instructions(here, mode, k, 1, receiver.endpoint, FLOW_CHILD) / k
            print(f"  {mode:9s} {per_flow[mode]:>16,.0f} instructions a flow", flush=True)
        spans = receiver.spans
    off, native, ours = per_flow["off"], per_flow["native"], per_flow["pipetrace"]
    print(f"Prefect 50-task flow, instructions of the flow's process per flow (callgrind, every thread; {k} flows "
          f"counted after one; spans at the receiver {spans}; the ephemeral server not counted):")
    print(f"  native / off {native / off:.4f}, pipetrace / off {ours / off:.4f}, pipetrace / native "
          f"{ours / native:.4f}; added per task run: native {(native - off) / 50:,.0f}, "
          f"pipetrace {(ours - off) / 50:,.0f}")


if __name__ == "__main__":
    main()
