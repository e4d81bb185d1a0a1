"""Instructions per span of the store thread's three stages for Prefect-shaped runs, counted by valgrind.

Thread CPU on a shared 2-core machine swings by 20-40 % between rounds (a stage whose code did not change
can read 1.3x), so a change of a few percent cannot be seen in it. Instruction counts do not depend on
the load: this runs one process under ``valgrind --tool=callgrind`` per (stage, count), with a fixed hash
seed, and prints (instructions with ``--runs`` runs) - (instructions with none), per span:

* ``rows``: ``records.readable_row`` as the store exporter calls it (the readers the settings pass);
* ``redact``: the redaction transform the default settings build;
* ``write``: ``SpanStore.write_rows`` of a run's rows, one commit a run, SQLite (user-space only: the
  kernel's share of the WAL writes is not counted).

The spans (``--shape``): ``real`` (the default), ``export_path.prefect_spans``' runs, shaped as a real
Prefect flow's spans reach the store thread (unique UUIDv7 task-run and state ids, generated run names,
the fan-in's 98 links); ``sdk``, ``store_scale_runs.prefect_run``'s (real SDK spans; until this stop the
only shape, whose values mostly repeat). Both: 50 task spans with two state events each, a batch span and
the run span. ``--before CHECKOUT`` counts the same with that checkout's ``.venvs/core`` (its pipetrace); the
spans are made by this checkout's benchmark code in both, uuid4s drawn from the seeded ``random``.

    .venvs/core/bin/python benchmarks/store_scale_instructions.py [--stages rows,redact,write] [--shape real]
        [--before <checkout>]

Needs ``valgrind`` (Debian package ``valgrind``); ~40 s a process. ``--bytecodes`` counts the Python bytecodes the
stage runs instead (a trace function; no valgrind): a change that cuts them may still cost instructions.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPANS_PER_RUN = 52

CHILD = r'''
import functools, random, sys, tempfile, uuid
from pathlib import Path
random.seed(1)
uuid.uuid4 = lambda: uuid.UUID(int=random.getrandbits(128), version=4)  # the same ids in every process
sys.path.insert(0, sys.argv[3])
from pipetrace.machinery import sdk
from pipetrace.store.records import readable_row
stage, m, made, shape, what = sys.argv[1], int(sys.argv[2]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
ops = [0]


def opcode(frame, event, arg):
    if event == "opcode":
        ops[0] += 1
    return opcode


def tracing(frame, event, arg):
    frame.f_trace_opcodes = True
    return opcode


def counted(fn):
    """``fn`` with the Python bytecodes it runs counted (``--bytecodes``), or as it is."""
    if what != "bytecodes":
        return fn

    def call(*args):
        sys.settrace(tracing)
        try:
            return fn(*args)
        finally:
            sys.settrace(None)
    return call


if shape == "real":
    from export_path import prefect_spans
    make = lambda: prefect_spans(1)
else:
    from store_scale_runs import _tracer, prefect_run
    tracer = _tracer()
    make = lambda: prefect_run(tracer)
made_runs = [make() for _ in range(2 + made)]  # as many made whatever is counted
runs = made_runs[:2 + m]
row = functools.partial(readable_row, span_attributes=sdk.span_attributes, attributes=sdk.plain_attributes)
if stage == "rows":
    counted_row = counted(row)
    for r in runs:  # the first two warm up
        for s in r:
            counted_row(s)
elif stage == "redact":
    from pipetrace.config import Settings
    from pipetrace.redaction import transform_for
    redact = counted(transform_for(Settings(), span_attributes=sdk.span_attributes, attributes=sdk.plain_attributes))
    for r in runs:
        for s in r:
            redact(s)
elif stage == "write":
    from pipetrace.config import Settings
    from pipetrace.processing.export import build_queues
    [queue] = build_queues(Settings(home=Path(tempfile.mkdtemp(prefix="pipetrace-bench-ir-")), exporters=("store",)))
    rowsets = [[row(s) for s in r] for r in made_runs]  # as many built whatever is counted
    write_rows = counted(queue.exporter.store.write_rows)
    for rows in rowsets[:2 + m]:
        write_rows(rows)
print("bytecodes", ops[0])
'''


def count(python: str, stage: str, runs: int, made: int, shape: str, what: str) -> int:
    """The instructions (callgrind) or Python bytecodes (a trace function, no valgrind) the child runs."""
    if what == "bytecodes":
        out = subprocess.run([python, "-c", CHILD, stage, str(runs), str(HERE), str(made), shape, what],
                             capture_output=True, text=True, timeout=1200, env=dict(os.environ, PYTHONHASHSEED="0"))
        if out.returncode != 0:
            raise RuntimeError(f"{stage} {runs}: {out.stderr[-2000:]}")
        return int(out.stdout.split()[-1])
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", python, "-c", CHILD,
                          stage, str(runs), str(HERE), str(made), shape, what], capture_output=True, text=True,
                         timeout=1200, env=dict(os.environ, PYTHONHASHSEED="0"))
    found = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"{stage} {runs}: {out.stderr[-2000:]}")
    return int(found.group(1))


def per_span(python: str, stage: str, runs: int, shape: str, what: str) -> float:
    """Instructions (bytecodes) per span of ``stage``: the same process (the same spans made) with ``runs`` runs
    put through it and with none, subtracted; the first two runs of each warm the caches up."""
    with ThreadPoolExecutor(2) as pool:
        with_runs, without = pool.map(lambda n: count(python, stage, n, runs, shape, what), (runs, 0))
    return (with_runs - without) / (runs * SPANS_PER_RUN)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stages", default="rows,redact,write")
    parser.add_argument("--runs", type=int, default=6, help="runs counted (52 spans each)")
    parser.add_argument("--shape", choices=("real", "sdk"), default="real", help="the spans (see the module doc)")
    parser.add_argument("--before", help="another checkout (with .venvs/core) counted as 'before'")
    parser.add_argument("--bytecodes", action="store_true", help="count Python bytecodes instead (no valgrind)")
    args = parser.parse_args()
    what = "bytecodes" if args.bytecodes else "instructions"
    if what == "instructions" and shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install -y valgrind)")
    pythons = {"this checkout": sys.executable}
    if args.before:
        pythons[f"before ({args.before})"] = str(Path(args.before) / ".venvs" / "core" / "bin" / "python")
    how = "Python bytecodes per span (a trace function" if args.bytecodes else "instructions per span (callgrind"
    print(f"store thread, {how}, PYTHONHASHSEED=0), Prefect runs of {SPANS_PER_RUN} "
          f"spans ({args.shape} shape), {args.runs} runs counted:")
    for stage in args.stages.split(","):
        got = {label: per_span(python, stage, args.runs, args.shape, what) for label, python in pythons.items()}
        line = "  ".join(f"{label} {value:,.0f}" for label, value in got.items())
        if args.before:
            values = list(got.values())
            line += f"  this/before {values[0] / values[1]:.3f}"
        print(f"  {stage:>6s}: {line}")


if __name__ == "__main__":
    main()
