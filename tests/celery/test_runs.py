"""Celery workflows are runs: on a real prefork worker (2 processes) on Redis and on RabbitMQ, every
canvas shape ends as one run — one run id on every span, a run span with the right result, counts
and end time, emitted once by the worker's run closer from the store — and its run id opens it.

One worker per broker serves every shape (the closer's settle and timeout shortened for the test)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import APP_DIR, BIN, REDIS, ROOT, broker_url, start_worker
from pipetrace import attributes as A
from pipetrace.adapter.message_runs import ATTEMPTS, CANCELLED, FAILURES, PENDING, TASKS
from pipetrace.cli import app
from pipetrace.store import SpanRecord, SpanStore
from typer.testing import CliRunner

SCENARIO = ROOT / "tests" / "celery" / "runs_scenario.py"
CLOSER_ENV = {"PIPETRACE_RUN_SWEEP": "0.5", "PIPETRACE_RUN_SETTLE": "1", "PIPETRACE_RUN_TIMEOUT": "6"}
# shape → (result, tasks, attempts, failures, cancelled)
EXPECTED = {
    "chain": ("success", 3, 3, 0, 0),
    "group": ("success", 3, 3, 0, 0),
    "chord_failing_body": ("failure", 4, 4, 1, 0),
    "nested_chord": ("success", 5, 5, 0, 0),
    "chunks": ("success", 2, 2, 0, 0),
    "retries": ("success", 1, 3, 0, 0),
    "eta": ("success", 1, 1, 0, 0),
    "revoked": ("success", 1, 1, 0, 1),
    "killed": ("failure", 1, 1, 1, 0),
    "lost": ("timeout", 0, 0, 0, 0),
}


class Outcome:
    def __init__(self, home: Path, ids: dict[str, dict[str, Any]]) -> None:
        self.home = home
        self.ids = ids
        self.store = SpanStore(home / "traces.db")

    def trace_of(self, shape: str) -> list[SpanRecord]:
        rows = self.store._query("SELECT trace_id FROM spans WHERE json_extract(attributes, ?)=? LIMIT 1",
                                 (f'$."{A.MESSAGING_MESSAGE_ID}"', self.ids[shape]["task"]))
        return self.store.trace(rows[0][0]) if rows else []

    def closed(self) -> bool:
        return all(any(s.is_run for s in self.trace_of(shape)) for shape in self.ids)

    def wait_closed(self, seconds: float = 45) -> None:
        deadline = time.monotonic() + seconds
        while not self.closed() and time.monotonic() < deadline:
            time.sleep(0.5)


def _produce(env: dict[str, str], phase: str) -> dict[str, dict[str, Any]]:
    out = subprocess.run([str(BIN / "pipetrace"), "run", "--", str(BIN / "python"), str(SCENARIO), phase],
                         cwd=APP_DIR, env=env, capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    return json.loads(out.stdout.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def outcome(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    kind = request.param
    home = tmp_path_factory.mktemp(f"runs-{kind}")
    worker = start_worker(home, broker_url(kind), REDIS, extra_env=CLOSER_ENV)  # Redis: the worker's key prefix
    lost_queue = None
    try:
        env = dict(worker.env, PYTHONPATH=str(APP_DIR))
        result = Outcome(home, _produce(env, "all"))
        lost_queue = result.ids["lost"]["queue"]
        result.wait_closed()
        result.ids.update(_produce(env, "kill"))  # after the rest ended (see runs_scenario.py)
        result.wait_closed()
        yield result
        result.store.close()
    finally:
        worker.stop()
        if lost_queue and kind == "rabbitmq":  # on Redis the queue's keys went with the worker's key prefix
            from kombu import Connection

            with Connection(broker_url(kind)) as conn:
                conn.default_channel.queue_delete(lost_queue)


@pytest.mark.parametrize("shape", sorted(EXPECTED))
def test_each_shape_is_one_closed_run(outcome: Outcome, shape: str) -> None:
    spans = outcome.trace_of(shape)
    assert spans, f"no spans for {shape}"
    runs = [s for s in spans if s.is_run]
    assert len(runs) == 1, f"{shape}: {len(runs)} run spans (log: {outcome.home})"
    run = runs[0]
    result, tasks, attempts, failures, cancelled = EXPECTED[shape]
    attrs = run.attributes
    assert (attrs[A.PIPELINE_RESULT], attrs[TASKS], attrs[ATTEMPTS], attrs[FAILURES], attrs[CANCELLED]) == (
        result, tasks, attempts, failures, cancelled), shape
    assert (run.status == "ERROR") == (result in A.FAILED_RESULTS)
    # one run id on every Celery span of the trace, the one the docs predict
    run_id = attrs[A.PIPELINE_RUN_ID]
    assert {s.run_id for s in spans if s.system == "celery" and not s.is_run} == {run_id}
    if "run_id" in outcome.ids[shape]:
        assert run_id == outcome.ids[shape]["run_id"]
    # the run's time span is its spans' (the end is the last message's handling, not the sweep)
    others = [s for s in spans if not s.is_run]
    assert run.start_ns == min(s.start_ns for s in others) and run.end_ns == max(s.end_ns for s in others)
    if shape == "eta":
        task = [s for s in others if s.kind == "CONSUMER"][0]
        assert task.start_ns >= outcome.ids["eta"]["eta"] * 1e9 - 0.1e9 and run.end_ns == task.end_ns
    if shape == "revoked":
        (revoked,) = [s for s in others if s.kind == "CONSUMER"]
        assert revoked.name == "task pipeline_app.add" and revoked.attributes[A.TASK_RESULT] == "cancellation"
    if shape == "lost":
        assert attrs[PENDING] == 1
    # opened by its run id, in the CLI and the store
    assert outcome.store.resolve(run_id) == run.trace_id
    shown = CliRunner().invoke(app, ["show", run_id], env={"PIPETRACE_HOME": str(outcome.home)})
    assert shown.exit_code == 0, shown.output
    path = CliRunner().invoke(app, ["critical-path", run_id, "--json"], env={"PIPETRACE_HOME": str(outcome.home)})
    assert path.exit_code == 0 and json.loads(path.output)["total_ms"] == pytest.approx(run.duration_ms, abs=0.01)


def test_runs_list_has_no_finished_workflow_running(outcome: Outcome) -> None:
    listed = CliRunner().invoke(app, ["runs", "--system", "celery", "--limit", "100", "--json"],
                                env={"PIPETRACE_HOME": str(outcome.home)})
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    mine = {run["trace_id"]: run for run in rows}
    for shape, (result, *_rest) in EXPECTED.items():
        trace_id = outcome.trace_of(shape)[0].trace_id
        assert mine[trace_id]["status"] == result and not mine[trace_id]["in_progress"], shape
    failed = CliRunner().invoke(app, ["runs", "--status", "failure", "--json"],
                                env={"PIPETRACE_HOME": str(outcome.home)})
    assert len(json.loads(failed.output)) == 2
