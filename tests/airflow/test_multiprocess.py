"""A real deployment: scheduler + dag-processor + API server + LocalExecutor on PostgreSQL, DAG
triggered by the CLI with an upstream traceparent → one trace, spans from several processes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _cluster import Cluster
from conftest import by_name, link_targets, shape
from pipetrace.store import SpanStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

UPSTREAM_TRACE, UPSTREAM_SPAN = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


def _wait_spans(store_path: Path, trace_id: str, want: int, timeout: float = 30) -> list[Any]:
    deadline = time.monotonic() + timeout
    spans: list[Any] = []
    while time.monotonic() < deadline:
        if store_path.exists():
            spans = SpanStore(store_path).trace(trace_id)
            if len(spans) >= want:
                return spans
        time.sleep(0.5)
    return spans


def test_cli_triggered_run_is_one_trace(cluster: Cluster) -> None:
    run_id = "pt-multiprocess-1"
    conf = json.dumps({"traceparent": f"00-{UPSTREAM_TRACE}-{UPSTREAM_SPAN}-01"})
    cluster.trigger("pt_etl", run_id, conf)
    assert cluster.wait_run("pt_etl", run_id) == "success", cluster.logs()
    spans = _wait_spans(cluster.root / "pt" / "traces.db", UPSTREAM_TRACE, want=6)
    assert shape(spans) == {
        ("run pt_etl", "<remote>", "success", None, None),
        ("task extract", "run pt_etl", "success", 1, None),
        ("task transform_sum", "run pt_etl", "success", 1, None),
        ("task transform_max", "run pt_etl", "success", 1, None),
        ("task transform_count", "run pt_etl", "success", 1, None),
        ("task load", "run pt_etl", "success", 1, None),
    }, cluster.logs()
    assert len(spans) == 6  # run span present once, nothing from Airflow's own tracer
    named = by_name(spans)
    (run,) = named["run pt_etl"]
    assert run.parent_span_id == UPSTREAM_SPAN and run.trace_id == UPSTREAM_TRACE
    tasks = [s for s in spans if s.name.startswith("task ")]
    task_pids = {s.resource["process.pid"] for s in tasks}
    assert len(task_pids) >= 2 and run.resource["process.pid"] not in task_pids
    # service.name per component: the scheduler ends the run, task processes run the tasks
    assert run.resource["service.name"] == "airflow-scheduler"
    assert {s.resource["service.name"] for s in tasks} == {"airflow-task"}
    (load,) = named["task load"]
    assert [t[0] for t in link_targets(load, spans)] == sorted(
        ["task transform_count", "task transform_max", "task transform_sum"])
    # log correlation: the task's own log file carries the span's ids
    (extract,) = named["task extract"]
    logs = list((cluster.root / "airflow" / "logs").rglob("*task_id=extract*/attempt=1.log"))
    assert logs, list((cluster.root / "airflow" / "logs").rglob("*"))
    lines = [json.loads(line) for line in logs[0].read_text().splitlines() if line.startswith("{")]
    correlated = [ln for ln in lines if ln.get("trace_id") == UPSTREAM_TRACE]
    assert correlated and all(ln["span_id"] == extract.span_id for ln in correlated)
