"""Publishes one workflow of each canvas shape to a worker of ``pipeline_app`` and prints, per shape,
a task id of it and the run id the docs predict (the first message published in the run). Waits for
nothing but its own publishes: the test reads the outcome from the store.

    PYTHONPATH=example_dags/celery pipetrace run -- python tests/celery/runs_scenario.py [all|kill]
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import pipetrace
from celery import chain, chord, group
from pipeline_app import add, app, boom, die, flaky, tsum


def main(phase: str) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    if phase == "kill":  # alone: the killed pool process takes the spans it had not exported yet with it
        k = die.delay(1)
        out["killed"] = {"task": k.id, "run_id": k.id}
        pipetrace.force_flush(10)
        return out
    c = chain(add.s(1, 2), add.s(3), add.s(4)).apply_async()
    out["chain"] = {"task": c.id, "run_id": c.parent.parent.id}
    g = group(add.s(i, i) for i in range(3)).apply_async()
    out["group"] = {"task": g.results[-1].id, "run_id": g.results[0].id}
    if phase == "chain_group":  # the run-span export test: two shapes only
        pipetrace.force_flush(10)
        return out
    ch = chord((add.s(i, 1) for i in range(3)), boom.s()).apply_async()
    out["chord_failing_body"] = {"task": ch.id, "run_id": ch.parent.results[0].id}
    nested = chord([chord([add.s(1, 1), add.s(2, 2)], tsum.s()), add.s(3, 3)], tsum.s()).apply_async()
    out["nested_chord"] = {"task": nested.id}
    chunks = add.chunks(zip(range(4), range(4), strict=True), 2).apply_async()
    out["chunks"] = {"task": chunks.results[0].id, "run_id": chunks.results[0].id}
    f = flaky.delay(7)
    out["retries"] = {"task": f.id, "run_id": f.id}
    eta = datetime.now(timezone.utc) + timedelta(seconds=2)
    e = add.apply_async((2, 2), eta=eta)
    out["eta"] = {"task": e.id, "run_id": e.id, "eta": eta.timestamp()}
    r = add.apply_async((5, 5), countdown=3)
    app.control.revoke(r.id)
    out["revoked"] = {"task": r.id, "run_id": r.id}
    lost_queue = f"pt-lost-{uuid.uuid4().hex[:8]}"  # nobody consumes it: the message is never handled
    lost = add.apply_async((1, 1), queue=lost_queue)
    out["lost"] = {"task": lost.id, "run_id": lost.id, "queue": lost_queue}
    time.sleep(0.2)
    pipetrace.force_flush(10)
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else "all")))
