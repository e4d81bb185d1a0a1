"""Garbage, oversized and adversarial trace headers on real Celery messages through a real worker: every
task runs normally with its correct result, one span each, no exception, bounded span size and memory."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from bad_headers import TP, cases
from queue_store import all_spans, task_spans_by_id
from queue_workers import BIN, HERE, queue_name, redis_url, run_traced, start_worker

pytest_plugins = ["queue_report"]

ROUNDS = 6
UPSTREAM_TRACE = TP.split("-")[1]
# cases whose traceparent itself is unusable: the task span must be a new root saying why
BAD_TRACEPARENT = {"control characters", "lone surrogates", "invalid utf-8 bytes", "traceparent list",
                   "traceparent dict", "traceparent number", "traceparent 1 MB", "all-zero ids", "version ff",
                   "nested headers garbage", "nested headers not a dict"}


def untraced(env: dict[str, str], *args: str) -> dict[str, Any]:
    """A producer without pipetrace: the headers reach the worker exactly as written."""
    out = subprocess.run([str(BIN / "python"), "produce.py", "headers", *args], cwd=HERE, env=env,
                         capture_output=True, timeout=240)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    return dict(json.loads(out.stdout.decode().strip().splitlines()[-1]))


def test_adversarial_headers_through_a_real_worker(tmp_path: Path, report: Any) -> None:
    assert BAD_TRACEPARENT <= set(cases())
    home = tmp_path / "home"
    worker = start_worker(home, redis_url(), queue_name("rq-headers"),
                          env={"RQ_BACKEND": redis_url()})
    try:
        warmup = untraced(worker.env, "1")["tasks"]
        rss_start = worker.rss_mb()
        raw = untraced(worker.env, str(ROUNDS))["tasks"]
        rss_end = worker.rss_mb()
        traced = json.loads(run_traced("produce.py", "headers", env=worker.env).splitlines()[-1])["tasks"]
    finally:
        assert worker.stop() == 0
    print(f"\nworker RSS MB after warm-up {rss_start}, after {ROUNDS} rounds of bad headers {rss_end}")
    sent = warmup + raw + traced
    assert all(t["value"] == 2 * t["x"] for t in sent), "every task ran normally"

    spans = all_spans(home)
    by_id = {s.span_id: s for s in spans}
    attempts = task_spans_by_id(spans)
    assert set(attempts) == {t["id"] for t in sent}
    for task in sent:
        (span,) = attempts[task["id"]]
        assert span.status != "ERROR" and span.attributes["cicd.pipeline.task.run.result"] == "success"
        assert span.attributes["cicd.pipeline.name"] == "queue_app.add", task["case"]
        assert len(json.dumps(span.attributes)) < 4096 and len(span.links) <= 1024, task["case"]
    missing = "pipetrace.context.missing"
    for task in warmup + raw:
        span = attempts[task["id"]][0]
        joined = span.trace_id == UPSTREAM_TRACE and span.parent_span_id == TP.split("-")[2]
        is_new_root = span.parent_span_id is None and any(e["name"] == missing for e in span.events)
        assert joined != is_new_root, (task["case"], span.trace_id, span.events)
        if task["case"] in BAD_TRACEPARENT:
            assert is_new_root, task["case"]
    for task in traced:  # a traced producer's own context wins over whatever the caller put there
        span = attempts[task["id"]][0]
        send = by_id[span.parent_span_id]
        assert send.kind == "PRODUCER" and send.trace_id == span.trace_id and not span.events
    log = worker.log.read_text()
    assert "Traceback" not in log and "ERROR/" not in log, log[-3000:]
    # bounded memory: rounds of multi-megabyte headers leave no trace in the worker's processes
    growth = {k: rss_end[k] - rss_start[k] for k in rss_start if k in rss_end}
    assert max(growth.values()) < 40, growth
    expected = 2 * len(traced) + len(warmup) + len(raw)
    stored = len(spans)
    report.row(f"bad headers: {len(cases())} kinds, real worker", len(sent), expected, stored)
    assert stored == expected
