"""``[traces] otel_on = True``: Airflow's own spans and ours in one trace, no second run span, our task
spans under Airflow's ``worker.*`` spans — checked at a local OTLP receiver and in the store."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from _cluster import Cluster
from _otlp import Receiver
from pipetrace.store import SpanStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def native_cluster(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("native"), extra_env={
        "AIRFLOW__TRACES__OTEL_ON": "True",
        "OTEL_TRACES_EXPORTER": "otlp_proto_http",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
        # Airflow's provider already ships every span (ours included) to the collector
        "PIPETRACE_EXPORTERS": "store",
    })
    try:
        c.start()
        yield c
    finally:
        c.stop()


def test_native_tracing_coexists(native_cluster: Cluster, receiver: Receiver) -> None:
    run_id = "pt-native-1"
    native_cluster.trigger("pt_etl", run_id, json.dumps({"traceparent": "garbage"}))
    assert native_cluster.wait_run("pt_etl", run_id) == "success", native_cluster.logs()

    def collected() -> list[dict[str, Any]]:
        names = [s["name"] for s in receiver.spans]
        ours = [n for n in names if n.startswith("task ")]
        return receiver.spans if "dag_run.pt_etl" in names and len(ours) >= 5 else []

    spans = native_cluster.wait_for("spans at the receiver", collected, timeout=60)
    time.sleep(2)  # anything late (a duplicate would arrive now)
    spans = list(receiver.spans)
    dag_runs = [s for s in spans if s["name"] == "dag_run.pt_etl"]
    assert len(dag_runs) == 1
    assert not [s for s in spans if s["name"].startswith("run ")]  # no second run span
    trace_id = dag_runs[0]["trace_id"]
    by_id = {s["span_id"]: s for s in spans}
    ours = [s for s in spans if s["name"].startswith("task ")]
    assert sorted(s["name"] for s in ours) == sorted(
        f"task {t}" for t in ("extract", "transform_sum", "transform_max", "transform_count", "load"))
    for s in ours:
        assert s["trace_id"] == trace_id
        parent = by_id[s["parent_span_id"]]
        assert parent["name"] == "worker." + s["name"].removeprefix("task ")
    # the store holds the same trace, with the XCom links only pipetrace adds
    store = SpanStore(native_cluster.root / "pt" / "traces.db")
    stored = {s.name: s for s in store.trace(trace_id)}
    assert "dag_run.pt_etl" in stored and "run pt_etl" not in stored
    assert len(stored["task load"].links) == 3
    assert {lk["attributes"]["pipetrace.link.kind"] for lk in stored["task load"].links} == {"xcom"}
