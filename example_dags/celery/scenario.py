"""Runs a small workflow set against a worker of ``pipeline_app`` and prints the ids as JSON:
chain of 3, group of 5, chord 5→1, a task retried twice, a failing task, a countdown task, a task
raising an expected error, and a ``send_task`` to a name no worker knows.

    pipetrace run -- python scenario.py [all|simple|revoke|garbage]
"""

from __future__ import annotations

import json
import sys
import time

import pipetrace
from celery import chain, chord, group
from pipeline_app import add, app, boom, expected, flaky, mul, tsum


def _wait(result: object, timeout: float = 30) -> object:
    try:
        return result.get(timeout=timeout, propagate=False)  # type: ignore[attr-defined]
    except Exception as exc:
        return repr(exc)


def main(mode: str) -> dict[str, object]:
    out: dict[str, object] = {}
    if mode == "simple":
        r = add.delay(2, 3)
        out["add"] = {"id": r.id, "value": _wait(r)}
    if mode == "all":
        c = chain(add.s(1, 2), mul.s(3), add.s(4)).apply_async()
        out["chain"] = {"value": _wait(c), "ids": [c.parent.parent.id, c.parent.id, c.id]}
        g = group(add.s(i, i) for i in range(5)).apply_async()
        out["group"] = {"value": _wait(g), "ids": [r.id for r in g.results], "group_id": g.id}
        ch = chord((add.s(i, 1) for i in range(5)), tsum.s()).apply_async()
        out["chord"] = {"value": _wait(ch), "body": ch.id, "header": [r.id for r in ch.parent.results]}
        f = flaky.delay(7)
        out["flaky"] = {"id": f.id, "value": _wait(f)}
        b = boom.delay(1)
        out["boom"] = {"id": b.id, "value": str(_wait(b))}
        e = expected.delay(1)
        out["expected"] = {"id": e.id, "value": str(_wait(e))}
        cd = add.apply_async((1, 1), countdown=1)
        out["countdown"] = {"id": cd.id, "value": _wait(cd)}
        u = app.send_task("pipeline_app.not_registered", (1,))
        out["unknown"] = {"id": u.id}
        time.sleep(0.5)
    if mode == "revoke":
        task_id = "revoked-" + str(time.time_ns())
        app.control.revoke(task_id)
        time.sleep(1.0)
        add.apply_async((1, 1), task_id=task_id)
        out["revoked"] = {"id": task_id}
        r = add.delay(5, 5)  # a later task: once it ran, the revoked message was handled
        out["after"] = {"id": r.id, "value": _wait(r)}
    if mode == "garbage":
        # An untraced producer sending headers pipetrace cannot use.
        bad = app.send_task("pipeline_app.add", (1, 2),
                            headers={"traceparent": "00-zzzz-not-a-trace-01", "tracestate": "x" * 10000,
                                     "pipetrace-published-ns": "yesterday"})
        out["garbage"] = {"id": bad.id, "value": _wait(bad)}
    pipetrace.force_flush(10)
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else "all")))
