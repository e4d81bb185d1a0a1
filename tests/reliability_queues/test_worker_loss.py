"""Processes dying under a Celery worker: a pool child killed with SIGKILL mid-task (``task_acks_late``,
with and without ``task_reject_on_worker_lost``) and a warm shutdown (SIGTERM) with tasks running."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from pipetrace.integrations.celery.common import attempt_span_id
from queue_store import all_spans, task_spans_by_id
from queue_workers import (
    RABBIT,
    delete_rabbit_queue,
    queue_name,
    redis_url,
    run_traced,
    start_worker,
    wait_until,
)

pytest_plugins = ["queue_report"]

LOST = "billiard.exceptions.WorkerLostError"


def kill_first_delivery(home: Path, broker: str, queue: str, *, requeue: bool) -> tuple[str, int, float]:
    """Start a worker, send one ``fragile`` task, SIGKILL the child running it; (task id, pid, kill time)."""
    env = {"RQ_ACKS_LATE": "1", "RQ_REJECT_ON_LOST": "1" if requeue else "0"}
    worker = start_worker(home, broker, queue, env=env)
    marker = str(home / "fragile")
    try:
        sent = json.loads(run_traced("produce.py", "fragile", marker, "60", env=worker.env).splitlines()[-1])
        wait_until(lambda: Path(marker + ".first").exists(), 60, "the task to start")
        pid = int(Path(marker + ".first").read_text())
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        if requeue:
            wait_until(lambda: b"succeeded" in worker.log.read_bytes(), 60, "the redelivered task to finish")
        else:
            wait_until(lambda: b"WorkerLostError" in worker.log.read_bytes(), 60, "the worker to see the loss")
    finally:
        assert worker.stop() == 0  # warm shutdown: every process flushes
    return str(sent["id"]), pid, killed_at


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_sigkill_with_requeue_redelivers_and_records_lost_attempt(tmp_path: Path, report: Any,
                                                                 broker: str) -> None:
    home = tmp_path / "home"
    queue = queue_name("rq-kill")
    url = redis_url() if broker == "redis" else RABBIT
    try:
        task_id, pid, killed_at = kill_first_delivery(home, url, queue, requeue=True)
    finally:
        if broker == "rabbitmq":
            delete_rabbit_queue(queue)
    assert Path(str(home / "fragile") + ".redelivered").exists()
    spans = all_spans(home)
    attempts = task_spans_by_id(spans)
    assert list(attempts) == [task_id]
    by_id = {s.span_id: s for s in spans}
    lost = [s for s in attempts[task_id] if s.status == "ERROR"]
    done = [s for s in attempts[task_id] if s.status != "ERROR"]
    assert len(lost) == 1 and len(done) == 1, [(s.name, s.status, s.attributes) for s in attempts[task_id]]
    lost_span, redelivered = lost[0], done[0]
    # the redelivered run is the live span of attempt 1; the lost run is its own span, never a duplicate
    assert redelivered.span_id == f"{attempt_span_id(task_id, 1):016x}"
    assert redelivered.attributes["cicd.pipeline.task.run.result"] == "success"
    assert "pipetrace.synthetic" not in redelivered.attributes
    assert lost_span.span_id != redelivered.span_id
    assert lost_span.attributes["error.type"] == LOST
    assert lost_span.attributes["cicd.pipeline.task.run.result"] == "failure"
    assert lost_span.attributes["pipetrace.celery.requeued"] is True
    assert lost_span.attributes["celery.worker_pid"] == pid
    assert lost_span.attributes["pipetrace.task.try_number"] == 1
    assert lost_span.start_ns / 1e9 <= killed_at <= lost_span.end_ns / 1e9 + 1
    # both hang off the one publish span, in one trace
    send = by_id[redelivered.parent_span_id]
    assert send.name == f"send {queue}" and send.kind == "PRODUCER" and send.parent_span_id is None
    assert lost_span.parent_span_id == send.span_id
    assert {s.trace_id for s in spans} == {send.trace_id}
    assert len(spans) == 3
    report.row(f"SIGKILL mid-task, requeued ({broker})", 2, 3, len(spans))


def test_sigkill_without_requeue_is_a_failed_attempt(tmp_path: Path, report: Any) -> None:
    home = tmp_path / "home"
    task_id, pid, killed_at = kill_first_delivery(home, redis_url(), queue_name("rq-kill"), requeue=False)
    assert not Path(str(home / "fragile") + ".redelivered").exists()
    spans = all_spans(home)
    attempts = task_spans_by_id(spans)
    assert list(attempts) == [task_id] and len(attempts[task_id]) == 1
    lost = attempts[task_id][0]
    # Celery's task_failure(WorkerLostError) in the main process: the attempt's own derived span id
    assert lost.span_id == f"{attempt_span_id(task_id, 1):016x}"
    assert lost.status == "ERROR" and lost.attributes["error.type"] == LOST
    assert lost.attributes["celery.state"] == "FAILURE" and "pipetrace.celery.requeued" not in lost.attributes
    assert lost.attributes["celery.worker_pid"] == pid
    assert lost.start_ns / 1e9 <= killed_at
    assert any(e["name"] == "exception" for e in lost.events)
    send = [s for s in spans if s.kind == "PRODUCER"]
    assert len(spans) == 2 and len(send) == 1 and lost.parent_span_id == send[0].span_id
    report.row("SIGKILL mid-task, acks_late, no requeue", 1, 2, len(spans))


def test_warm_shutdown_flushes_every_process(tmp_path: Path, report: Any) -> None:
    """SIGTERM while tasks run; exports are held back (60 s interval) so only the shutdown flush writes."""
    home = tmp_path / "home"
    queue = queue_name("rq-warm")
    worker = start_worker(home, redis_url(), queue, env={"PIPETRACE_EXPORT_INTERVAL": "60"})
    try:
        run_traced("produce.py", "bulk", "8", "1.5", env=dict(worker.env, PIPETRACE_EXPORT_INTERVAL="0.2"))
        wait_until(lambda: worker.log.read_bytes().count(b" received") >= 2, 60, "two tasks to start")
        time.sleep(0.3)
    finally:
        assert worker.stop() == 0
    log = worker.log.read_text()
    finished = set(re.findall(r"Task queue_app\.sleepy\[([0-9a-f-]+)\] succeeded", log))
    assert len(finished) >= 2, log[-2000:]
    spans = all_spans(home)
    attempts = task_spans_by_id(spans)
    sends = [s for s in spans if s.kind == "PRODUCER"]
    assert len(sends) == 8
    assert set(attempts) == finished  # every task that ran has its span, nothing else
    assert all(len(v) == 1 and v[0].attributes["cicd.pipeline.task.run.result"] == "success"
               for v in attempts.values())
    report.row("warm shutdown (SIGTERM) mid-task", len(finished), 8 + len(finished), len(spans))
