"""Load with tracing on: 20,000 Celery tasks through 2 prefork workers (Redis broker) and 100,000 kombu
messages through a callback consumer (Redis). Every span is counted in the store; each process's RSS is
printed after a warm-up and at the end and must stay flat."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from queue_store import count
from queue_workers import (
    BIN,
    HERE,
    base_env,
    key_prefix_of,
    queue_name,
    redis_url,
    run_traced,
    start_worker,
    wait_until,
)
from shared_services import delete_prefixed_keys

pytest_plugins = ["queue_report"]

TASKS, WARMUP_TASKS = 20_000, 1_000
MESSAGES, WARMUP_MESSAGES = 100_000, 5_000
RSS_GROWTH_MB = 20  # flat: a leak of one span (or one pending entry) per task would be well over this


def flat(start: dict[str, float], end: dict[str, float]) -> dict[str, float]:
    growth = {k: round(end[k] - start[k], 1) for k in start if k in end}
    assert growth and max(growth.values()) < RSS_GROWTH_MB, growth
    return growth


@pytest.mark.slow
def test_20000_celery_tasks_through_two_prefork_workers(tmp_path: Path, report: Any) -> None:
    home = tmp_path / "home"
    queue = queue_name("rq-load")
    workers = [start_worker(home, redis_url(), queue, name=f"{queue}-{i}", env={"RQ_PREFETCH": "8"})
               for i in range(2)]
    started = time.monotonic()
    try:
        run_traced("produce.py", "bulk", str(WARMUP_TASKS), env=workers[0].env)
        wait_until(lambda: count(home, "name = 'task queue_app.noop'") >= WARMUP_TASKS, 60, "the warm-up tasks")
        rss_start = [w.rss_mb() for w in workers]
        sent = json.loads(run_traced("produce.py", "bulk", str(TASKS - WARMUP_TASKS),
                                     env=workers[0].env).splitlines()[-1])
        wait_until(lambda: count(home, "name = 'task queue_app.noop'") >= TASKS, 150, "every task span", 1.0)
        rss_end = [w.rss_mb() for w in workers]
    finally:
        for w in workers:
            assert w.stop() == 0
    elapsed = time.monotonic() - started
    for w, start, end in zip(workers, rss_start, rss_end, strict=True):
        print(f"\n{w.name}: RSS MB after {WARMUP_TASKS} tasks {start}, after {TASKS} tasks {end}")
    growth = [flat(s, e) for s, e in zip(rss_start, rss_end, strict=True)]
    print(f"RSS growth MB per process {growth}; {TASKS} tasks in {elapsed:.1f} s "
          f"(publishing {sent['sent']} took {sent['seconds']:.1f} s)")
    tasks = count(home, "name = 'task queue_app.noop'")
    distinct = count(home, "name = 'task queue_app.noop' AND result = 'success'")
    sends = count(home, "kind = 'PRODUCER'")
    total = count(home, "is_run = 0")  # (the run spans the workers derive are not counted)
    report.row(f"load: {TASKS:,} Celery tasks, 2 prefork workers", TASKS, 2 * TASKS, total)
    assert tasks == distinct == sends == TASKS
    assert total == 2 * TASKS
    # both workers took a real share of the tasks
    shares = [w.log.read_text().count("] succeeded in") for w in workers]
    assert sum(shares) == TASKS and min(shares) > TASKS // 10, shares


@pytest.mark.slow
def test_100000_kombu_messages(tmp_path: Path, report: Any) -> None:
    home = tmp_path / "home"
    home.mkdir()
    url, queue = redis_url(), queue_name("rq-kombu")
    env = base_env(home, RQ_KEYPREFIX=key_prefix_of(queue))
    consumer = subprocess.Popen([str(BIN / "pipetrace"), "run", "--", str(BIN / "python"), "kombu_load.py",
                                 "consume", url, queue, str(MESSAGES), str(WARMUP_MESSAGES)],
                                cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)  # the consumer declares nothing: the producer's first publish declares the queue
        produced = json.loads(run_traced("kombu_load.py", "produce", url, queue, str(MESSAGES),
                                         env=env).splitlines()[-1])
        out, err = consumer.communicate(timeout=300)
    finally:
        if consumer.poll() is None:
            consumer.kill()
        delete_prefixed_keys(env["RQ_KEYPREFIX"])
    assert consumer.returncode == 0, err.decode()[-3000:]
    consumed = json.loads(out.decode().strip().splitlines()[-1])
    rss = consumed["rss_mb"]
    print(f"\nkombu consumer: RSS MB after {WARMUP_MESSAGES} messages {rss['start']:.1f}, after {MESSAGES} "
          f"{rss['end']:.1f}; publish {produced['seconds']:.1f} s, consume {consumed['seconds']:.1f} s")
    assert consumed["received"] == MESSAGES and consumed["out_of_order"] == 0
    for stats in (produced["stats_after_flush"], consumed["stats_after_flush"]):
        assert stats["store"]["dropped"] == 0 and stats["store"]["failed"] == 0, stats
    assert rss["end"] - rss["start"] < RSS_GROWTH_MB, rss
    sends = count(home, "kind = 'PRODUCER'")
    processes = count(home, "kind = 'CONSUMER'")
    total = count(home, "is_run = 0")  # (the run spans the workers derive are not counted)
    report.row(f"load: {MESSAGES:,} kombu messages (Redis)", MESSAGES, 2 * MESSAGES, total)
    assert sends == processes == MESSAGES and total == 2 * MESSAGES
