"""Airflow's OWN example DAGs (shipped inside apache-airflow) under ``dag.test()``: the ``xcom`` links of
every run equal the XCom reads Airflow served (see _xcom_edges) — none missing, none spurious, none
dangling. Mapped task groups, second-order mapping, ``ti.xcom_pull`` in user code, XComArgs in
templates, TaskFlow, task groups, setup/teardown."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from _xcom_edges import observe, recorded_edges, trace_links
from conftest import spans_of
from link_tally import LinkTally
from pipetrace.analysis.audit import DANGLING, audit

CASES = [
    ("example_dynamic_task_mapping.py", "example_dynamic_task_mapping"),
    ("example_dynamic_task_mapping.py", "example_task_mapping_second_order"),
    ("example_dynamic_task_mapping.py", "example_task_group_mapping"),
    ("example_dynamic_task_mapping_with_no_taskflow_operators.py",
     "example_dynamic_task_mapping_with_no_taskflow_operators"),
    ("example_xcom.py", "example_xcom"),
    ("example_xcomargs.py", "example_xcom_args"),
    ("example_xcomargs.py", "example_xcom_args_with_operators"),
    ("tutorial_taskflow_api.py", "tutorial_taskflow_api"),
    ("tutorial_taskflow_templates.py", "tutorial_taskflow_templates"),
    ("example_task_group_decorator.py", "example_task_group_decorator"),
    ("example_setup_teardown_taskflow.py", "example_setup_teardown_taskflow"),
]

TOTALS = LinkTally()


@cache
def _dag(filename: str, dag_id: str) -> Any:
    import airflow.example_dags
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    path = Path(airflow.example_dags.__file__).parent / filename
    bag = DagBag(dag_folder=str(path))
    sync_bag_to_db(bag, "dags-folder", None)  # dag.test() needs the DAG serialized in a known bundle
    return bag.dags[dag_id]


@pytest.fixture(scope="module", autouse=True)
def _totals() -> Iterator[None]:
    yield
    print(TOTALS.line("airflow example DAGs, xcom links vs Airflow's served reads"))


@pytest.mark.parametrize(("filename", "dag_id"), CASES, ids=[c[1] for c in CASES])
def test_links_equal_airflows_reads(store: Any, filename: str, dag_id: str) -> None:
    dag = _dag(filename, dag_id)
    with observe() as seen:
        dr = dag.test()
    assert str(getattr(dr.state, "value", dr.state)) == "success"
    recorded = recorded_edges(seen, dag_id, dr.run_id)
    links, dangling = trace_links(spans_of(store, dr.run_id))
    TOTALS.add(recorded, links, dangling)
    assert dangling == 0
    assert not [f for f in audit(store, sources={}).findings if f.kind == DANGLING]  # `pipetrace audit` agrees
    assert links == recorded
    if dag_id in ("example_task_mapping_second_order", "example_task_group_mapping", "example_xcom"):
        assert recorded  # the shapes this issue is about really read XComs


def test_switched_off_no_links_and_reads_unchanged(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipetrace.integrations.airflow import settings

    monkeypatch.setenv("AIRFLOW__PIPETRACE__XCOM_LINKS", "false")
    settings.reset()
    try:
        dr = _dag("example_dynamic_task_mapping.py", "example_task_group_mapping").test()
    finally:
        monkeypatch.delenv("AIRFLOW__PIPETRACE__XCOM_LINKS")
        settings.reset()
    assert str(getattr(dr.state, "value", dr.state)) == "success"
    spans = spans_of(store, dr.run_id)
    assert len([s for s in spans if s.name == "task op.mul_2"]) == 3
    assert trace_links(spans) == (set(), 0)
