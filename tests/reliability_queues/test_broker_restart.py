"""RabbitMQ restarted (``rabbitmqctl stop_app``/``start_app``) in the middle of Celery chains: the worker
reconnects, every chain finishes as one unbroken trace, every completed task has exactly one span.

The RabbitMQ restarted is a private node this test starts on free ports (the machine's RabbitMQ is shared
and never stopped)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from broker_control import rabbitmq_stopped
from queue_store import all_spans, task_spans_by_id
from queue_workers import (
    BIN,
    HERE,
    queue_name,
    redis_url,
    start_worker,
    wait_until,
)
from shared_services import private_rabbitmq

pytest_plugins = ["queue_report"]

CHAINS, LINKS, SLEEP_S = 3, 20, 0.25


def test_rabbitmq_restart_mid_run(tmp_path: Path, report: Any) -> None:
    home = tmp_path / "home"
    queue = queue_name("rq-restart")
    with private_rabbitmq(tmp_path / "rabbitmq") as node:
        chains, stopped_at, started = _chains_across_restart(node, home, queue)
    _check(home, queue, chains, stopped_at, started, report)


def _chains_across_restart(node: Any, home: Path, queue: str) -> tuple[list[Any], float, list[float]]:
    worker = start_worker(home, node.url, queue, env={"RQ_BACKEND": redis_url()})
    try:
        producer = subprocess.Popen(
            [str(BIN / "pipetrace"), "run", "--", str(BIN / "python"), "produce.py", "chains", str(CHAINS),
             str(LINKS), str(SLEEP_S)], cwd=HERE, env=worker.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            # the worker's log, not the store: the store lags by an export interval (more on a loaded
            # machine), and a stop that comes late would find every chain already done
            wait_until(lambda: worker.log.read_text().count("] succeeded in") >= 2 * CHAINS, 60,
                       "the chains to get going", interval=0.05)
            with rabbitmq_stopped(node) as (stopped_at, started):
                time.sleep(3)
            out, err = producer.communicate(timeout=180)
        finally:
            if producer.poll() is None:
                producer.kill()
        assert producer.returncode == 0, err.decode()[-3000:]
        chains = json.loads(out.decode().strip().splitlines()[-1])["chains"]
        # the worker is still consuming after the restart
        log = worker.log.read_text()
        assert log.count("Connected to amqp://") >= 2, log[-3000:]
    finally:
        assert worker.stop() == 0
    return chains, stopped_at, started


def _check(home: Path, queue: str, chains: list[Any], stopped_at: float, started: list[float], report: Any) -> None:
    spans = all_spans(home)
    by_id = {s.span_id: s for s in spans}
    attempts = task_spans_by_id(spans)
    expected_ids = [i for c in chains for i in c["ids"]]
    assert [c["value"] for c in chains] == [SLEEP_S] * CHAINS
    assert len(expected_ids) == CHAINS * LINKS
    assert set(attempts) == set(expected_ids)
    for chain in chains:
        links = [attempts[i] for i in chain["ids"]]
        assert all(len(a) == 1 for a in links), "a completed task has exactly one span"
        tasks = [a[0] for a in links]
        assert all(t.attributes["cicd.pipeline.task.run.result"] == "success" and t.status != "ERROR"
                   for t in tasks)
        assert len({t.trace_id for t in tasks}) == 1, "the chain is one trace across the restart"
        # unbroken causal path: each link was published from inside the previous link's span
        sends = [by_id[t.parent_span_id] for t in tasks]
        assert all(s.name == f"send {queue}" and s.kind == "PRODUCER" for s in sends)
        assert sends[0].parent_span_id is None
        for previous, send in zip(tasks, sends[1:], strict=False):
            assert send.parent_span_id == previous.span_id
    # the restart really was in the middle: tasks ran before the stop and after the start
    starts = sorted(s.start_ns / 1e9 for a in attempts.values() for s in a)
    assert starts[0] < stopped_at < started[0] < starts[-1]
    assert len(spans) == 2 * CHAINS * LINKS
    report.row("RabbitMQ stop_app/start_app mid-run", CHAINS * LINKS, 2 * CHAINS * LINKS,
                           len(spans))
