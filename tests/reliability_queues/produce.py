"""Publishes tasks of ``queue_app`` (run under ``pipetrace run --`` so each publish is traced) and prints
one JSON line with what it sent:

    python produce.py fragile MARKER SECONDS     one task the test will kill mid-run
    python produce.py bulk N [SLEEP_S]           N ``noop`` tasks (``sleepy`` when SLEEP_S is given)
    python produce.py chains K LINKS SLEEP_S     K chains of LINKS ``sleepy`` tasks; waits for their results
    python produce.py headers [ROUNDS]           one ``add`` task per case of ``bad_headers`` per round; waits
"""

from __future__ import annotations

import json
import sys
import time

import pipetrace
from bad_headers import cases
from celery import chain
from queue_app import add, fragile, noop, sleepy


def main(argv: list[str]) -> dict[str, object]:
    mode = argv[0]
    if mode == "fragile":
        result = fragile.delay(argv[1], float(argv[2]))
        out: dict[str, object] = {"id": result.id}
    elif mode == "bulk":
        n = int(argv[1])
        start = time.perf_counter()
        if len(argv) > 2:
            ids = [sleepy.delay(float(argv[2])).id for _ in range(n)]
        else:
            ids = [noop.delay().id for _ in range(n)]
        out = {"sent": len(ids), "first": ids[0], "last": ids[-1], "seconds": time.perf_counter() - start}
    elif mode == "chains":
        k, links, seconds = int(argv[1]), int(argv[2]), float(argv[3])
        results = [chain(sleepy.si(seconds) for _ in range(links)).apply_async() for _ in range(k)]
        out = {"chains": []}
        for result in results:
            value = result.get(timeout=150)
            ids, node = [], result
            while node is not None:
                ids.append(node.id)
                node = node.parent
            out["chains"].append({"value": value, "ids": ids[::-1]})  # type: ignore[attr-defined]
    elif mode == "headers":
        rounds = int(argv[1]) if len(argv) > 1 else 1
        sent = [(case, i, add.apply_async((i, i), headers=headers)) for _ in range(rounds)
                for i, (case, headers) in enumerate(cases().items())]
        out = {"tasks": [{"case": case, "x": i, "id": r.id, "value": r.get(timeout=60)} for case, i, r in sent]}
    else:
        raise SystemExit(f"unknown mode {mode}")
    assert pipetrace.force_flush(30), "producer spans not flushed"
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
