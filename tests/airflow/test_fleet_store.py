"""An Airflow run across a fleet on the PostgreSQL store: the real scheduler, API server and dag-processor
(metadata on PostgreSQL) hand each task instance to ``_pod_executor``, which runs it the way Kubernetes
pods do, on 3 "hosts" in turn — each a fresh process tree with its own PIPETRACE_HOME and host.name.
Every process writes to one PostgreSQL schema of this test; any home then shows the whole run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _cluster import Cluster
from _pod_executor import HOMES_ENV
from conftest import link_targets
from fleet_store import all_traces, cli, count, fresh_schema, store_url

pytestmark = [pytest.mark.slow, pytest.mark.timeout(720)]

HOSTS = 3
TASKS = ["task extract", "task load", "task transform_count", "task transform_max", "task transform_sum"]


def _run_on_fleet(root: Path, store: str, run_id: str) -> list[tuple[str, str]]:
    """Trigger pt_etl once on a cluster whose tasks run on the fleet's homes; its task instances' states."""
    here = str(Path(__file__).parent)
    cluster = Cluster(root / "control", extra_env={
        "AIRFLOW__CORE__EXECUTOR": "_pod_executor.PodExecutor",
        "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p),
        HOMES_ENV: os.pathsep.join(str(root / f"host{n}") for n in range(HOSTS)),
        "PIPETRACE_STORE": store, "OTEL_RESOURCE_ATTRIBUTES": "host.name=fleet-control"})
    try:
        cluster.start()
        cluster.trigger("pt_etl", run_id, "{}")
        state = cluster.wait_run("pt_etl", run_id, timeout=420)  # a fresh process per task: slow when loaded
        tis = cluster.sql("select task_id, state from task_instance where run_id = %s", run_id)
        assert state == "success", cluster.logs()
        # the run span leaves the scheduler on its export thread: let it land before the scheduler stops
        cluster.wait_for("every span in the fleet store", lambda: count(store, root) >= 1 + len(TASKS), timeout=120)
    finally:
        cluster.stop()  # SIGTERM: the scheduler flushes the run span it wrote when the run ended
    return [(str(t), str(s)) for t, s in tis]


def test_an_airflow_run_on_three_hosts_is_whole_from_every_home(tmp_path: Path) -> None:
    run_id = "pt-fleet-1"
    with fresh_schema("pt_airflow_fleet") as schema:
        store = store_url(schema)
        tis = _run_on_fleet(tmp_path, store, run_id)  # Airflow's own record of the run
        assert sorted(t for t, _ in tis) == sorted(name.split(" ", 1)[1] for name in TASKS)
        assert {s for _, s in tis} == {"success"}

        homes = [tmp_path / f"host{n}" for n in range(HOSTS)] + [tmp_path / "control" / "pt"]
        traces = all_traces(store, tmp_path / "reader")
        assert len(traces) == 1, {t: sorted(s.name for s in spans) for t, spans in traces.items()}
        (spans,) = traces.values()
        assert sorted(s.name for s in spans) == sorted(["run pt_etl", *TASKS])  # every span, each once
        tasks = [s for s in spans if s.name.startswith("task ")]
        (run,) = [s for s in spans if s.is_run]
        # each task came from its host's own process; the run span from the scheduler's host
        assert {s.resource["host.name"] for s in tasks} == {f"fleet-host{n}" for n in range(HOSTS)}
        assert len({s.resource["process.pid"] for s in tasks}) == len(TASKS)
        assert run.resource["host.name"] == "fleet-control" and run.result == "success"
        assert all(s.parent_span_id == run.span_id for s in tasks)
        for home in homes:  # the store was up: nothing waits in any host's local buffer
            assert not (home / "buffer.db").exists() or not _buffered(home)

        # the XCom links cross hosts: load reads the three transforms, each transform reads extract
        by_name = {s.name: s for s in spans}
        assert [t[0] for t in link_targets(by_name["task load"], spans)] == [
            "task transform_count", "task transform_max", "task transform_sum"]
        for name in ("task transform_count", "task transform_max", "task transform_sum"):
            assert [t[0] for t in link_targets(by_name[name], spans)] == ["task extract"]
        host = {name: s.resource["host.name"] for name, s in by_name.items()}
        assert {host[n] for n in TASKS if "transform" in n} - {host["task load"]}  # a link to another host

        # any home: the same run list, the whole run shown, and an audit that finds nothing missing
        listed = []
        for home in homes:
            out = cli(home, store, "runs", "--json")
            assert out.returncode == 0, out.stderr
            listed.append(json.loads(out.stdout))
        assert listed[0] == listed[1] == listed[2] == listed[3]
        assert [(r["pipeline"], r["run_id"], r["status"]) for r in listed[0]] == [("pt_etl", run_id, "success")]
        for home in homes:
            shown = cli(home, store, "show", run_id)
            assert shown.returncode == 0, shown.stderr
            assert all(name in shown.stdout for name in ["run pt_etl", *TASKS]), shown.stdout
        for home in homes[:HOSTS]:
            audit = cli(home, store, "audit", "--json")
            report = json.loads(audit.stdout)
            assert report["spans"] == len(spans), report
            assert report["findings"] == [], report  # no orphan, missing task, dangling link, missing run span
            cov = report["coverage"]["pt_etl"]
            assert (cov["runs"], cov["expected_tasks"], cov["traced_tasks"]) == (1, len(TASKS), len(TASKS)), report


def _buffered(home: Path) -> int:
    from pipetrace.store import SpanStore

    return SpanStore.local(home / "buffer.db").count()
