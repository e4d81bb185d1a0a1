"""A task whose process dies: the attempt still gets exactly one error span, from the scheduler side.

Real deployment (scheduler + dag-processor + API server + LocalExecutor on PostgreSQL). Two ways a task
dies without its own ``on_task_instance_failed`` ever running:

- only the task process is SIGKILLed: the supervisor survives and reports the attempt ``failed`` through
  the execution API (no listener runs there); the scheduler's end-of-run pass must emit the span;
- the task process *and* its supervisor are SIGKILLed (a true zombie): nothing heartbeats, the scheduler's
  heartbeat-timeout detection fails the TI through ``handle_failure`` and its listener emits the span.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pipetrace
import pytest
from _cluster import Cluster
from pipetrace.store import SpanStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DAGS = Path(__file__).parent / "zombie_dags"
DAG_ID, TASK_ID = "pt_zombie", "sleeper"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("zombie"), extra_env={
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        # the supervisor heartbeats every second; a TI silent for 6 s is a zombie, looked for every second
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "6",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "1",
    })
    try:
        c.start()
        yield c
    finally:
        c.stop()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _task_process(cluster: Cluster, run_id: str) -> int | None:
    """Pid of the running task process: the task runner sets its title to ``airflow worker -- {ti.id}``."""
    rows = cluster.sql("select id, state from task_instance where dag_id = %s and run_id = %s and task_id = %s",
                       DAG_ID, run_id, TASK_ID)
    if not rows or rows[0][1] != "running":
        return None
    title = f"airflow worker -- {rows[0][0]}"
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _cmdline(int(entry.name)).strip() == title:
            return int(entry.name)
    return None


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _spans(cluster: Cluster, run_id: str, timeout: float = 30) -> list[Any]:
    """The run's spans once its run span and task span are stored, plus a moment for late duplicates."""
    trace_id = pipetrace.run_identity("airflow", DAG_ID, run_id).trace_id
    trace_hex = trace_id if isinstance(trace_id, str) else f"{trace_id:032x}"
    path = cluster.root / "pt" / "traces.db"
    deadline = time.monotonic() + timeout
    spans: list[Any] = []
    while time.monotonic() < deadline:
        if path.exists():
            spans = SpanStore(path).trace(trace_hex)
            names = {s.name for s in spans}
            if {f"run {DAG_ID}", f"task {TASK_ID}"} <= names:
                time.sleep(2)
                return SpanStore(path).trace(trace_hex)
        time.sleep(0.5)
    return spans


def _kill_running_task(cluster: Cluster, run_id: str, *, with_supervisor: bool) -> set[int]:
    cluster.trigger(DAG_ID, run_id, "{}")
    pid = cluster.wait_for(f"{run_id} task process", lambda: _task_process(cluster, run_id), timeout=120)
    victims = [pid]
    if with_supervisor:
        supervisor = _parent(pid)
        assert "LocalExecutor" in _cmdline(supervisor), _cmdline(supervisor)
        victims.insert(0, supervisor)
    for victim in victims:
        os.kill(victim, signal.SIGKILL)
    return set(victims)


def _assert_one_scheduler_error_span(cluster: Cluster, run_id: str, killed: set[int]) -> Any:
    assert cluster.wait_run(DAG_ID, run_id, timeout=90) == "failed", cluster.logs()
    spans = _spans(cluster, run_id)
    detail = [(s.name, s.status, s.result, s.attributes, s.resource.get("process.pid")) for s in spans]
    tasks = [s for s in spans if s.name == f"task {TASK_ID}"]
    runs = [s for s in spans if s.name == f"run {DAG_ID}"]
    assert len(spans) == 2 and len(tasks) == 1 and len(runs) == 1, (detail, cluster.logs())
    (task,), (run,) = tasks, runs
    assert run.result == "failure" and run.parent_span_id is None
    assert task.parent_span_id == run.span_id
    assert task.attributes["pipetrace.task.try_number"] == 1
    assert task.status == "ERROR" and task.result == "failure", detail
    assert task.attributes["airflow.task_instance.state"] == "failed"
    scheduler_pid = cluster.procs[1].pid
    assert task.resource["process.pid"] == scheduler_pid == run.resource["process.pid"], detail
    assert task.resource["process.pid"] not in killed
    assert task.end_ns >= task.start_ns
    return task


def test_killed_task_process_gets_one_error_span(cluster: Cluster) -> None:
    run_id = "pt-zombie-task-killed"
    killed = _kill_running_task(cluster, run_id, with_supervisor=False)
    task = _assert_one_scheduler_error_span(cluster, run_id, killed)
    assert task.attributes["error.type"] == "airflow.TaskFailedOutsideWorker"


def test_heartbeat_timeout_zombie_gets_one_error_span(cluster: Cluster) -> None:
    run_id = "pt-zombie-heartbeat"
    killed = _kill_running_task(cluster, run_id, with_supervisor=True)
    task = _assert_one_scheduler_error_span(cluster, run_id, killed)
    assert task.attributes["error.type"] == "airflow.TaskFailedOutsideWorker"
    assert task.attributes["airflow.failure.source"] == "scheduler"
    rows = cluster.sql("select count(*) from log where dag_id = %s and run_id = %s and event = %s",
                       DAG_ID, run_id, "heartbeat timeout")
    assert rows[0][0] >= 1, cluster.logs()  # failed by the zombie detection, not by a worker
