"""Machine instructions per Celery span of the export side (redaction, OTLP encoding), counted by callgrind:
deterministic to ~1 %, so two code versions compare on a loaded machine where CPU timings move by ±20 %.

Bytecodes (``celery_bytecodes.py``) miss C work: a change that moves a Python loop into set or ``map``
operations over ``(key, value)`` tuples cut the export side's bytecodes by a quarter and was 10–15 %
slower in CPU time (it allocates a tuple per attribute). Instructions count that allocation.

Each checkout's ``.venvs/core`` python runs ``export_path.celery_spans`` (fresh spans, unique task ids, as
the adapter records them) under ``valgrind --tool=callgrind`` three times: spans made only, then redacted
(the default settings' transform), then encoded (``otlpwire.encode_request``, 512-span batches); each
stage's instructions are its run's total minus the first's, per span. ~40 s a run. Needs ``valgrind``
(Debian package ``valgrind``).

    python benchmarks/celery_export_instructions.py [--spans 2000] --before <checkout>
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

ROOT = Path(__file__).resolve().parent.parent

CHILD = r'''
import random, sys
random.seed(1)
sys.path.insert(0, sys.argv[4])
import export_path as ep
from pipetrace.config import load
from pipetrace.processing.runtime import _builtin_transforms
from pipetrace.machinery import otlpwire
mode, n = sys.argv[1], int(sys.argv[2])
[redact] = _builtin_transforms(load())
warm = ep.celery_spans(300)
out = [redact(s) for s in warm]
[otlpwire.encode_request(out[i:i + 512]) for i in range(0, len(out), 512)]
spans = ep.celery_spans(n // 2)
if mode == "redaction":
    spans = [redact(s) for s in spans]
if mode == "encoding":
    [otlpwire.encode_request(spans[i:i + 512]) for i in range(0, len(spans), 512)]
'''


def instructions(checkout: Path, mode: str, spans: int) -> int:
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, PIPETRACE_HOME=home, PYTHONHASHSEED="0")
        out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                              str(checkout / ".venvs" / "core" / "bin" / "python"), "-c", CHILD, mode, str(spans),
                              "", str(ROOT / "benchmarks")],
                             env=env, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", out.stderr)
    assert found, out.stderr[-2000:]
    return int(found.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=2000)
    ap.add_argument("--before", type=Path, required=True, help="another checkout (with its .venvs/core)")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install -y valgrind)")
    checkouts = {"before": args.before.resolve(), "after": ROOT}
    per_span: dict[str, dict[str, float]] = {}
    for name, checkout in checkouts.items():
        base = instructions(checkout, "none", args.spans)
        per_span[name] = {stage: (instructions(checkout, stage, args.spans) - base) / args.spans
                          for stage in ("redaction", "encoding")}
    print(f"celery export side, instructions per span (callgrind, {args.spans} spans: a send and a task span a task)")
    for stage in ("redaction", "encoding"):
        before, after = per_span["before"][stage], per_span["after"][stage]
        print(f"  {stage:10s} before {before:,.0f}  after {after:,.0f}  after/before {after / before:.3f}")


if __name__ == "__main__":
    main()
