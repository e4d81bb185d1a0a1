"""Result links equal Prefect's own record: for every flow in handoff_flows, the ``result`` links in the
stored trace are exactly the upstream runs Prefect recorded in ``task_inputs`` (read back through its
client) — direct calls, ``.submit``, ``.map`` (also second order), ``wait_for``, futures and states in
collections, subflow parameters and results, the thread and the process pool — none missing, none
spurious, none dangling."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import handoff_flows
import pytest
from link_tally import LinkTally
from pipetrace.analysis.audit import DANGLING, audit

TOTALS = LinkTally()
Edge = tuple[str, str]  # (consumer run id, producer run id)


@pytest.fixture(scope="module", autouse=True)
def _totals() -> Iterator[None]:
    yield
    print(TOTALS.line("prefect flows, result links vs task_inputs"))


def recorded_edges(flow_run_id: str) -> set[Edge]:
    """Every upstream run entry of every task run of the flow run and its subflows, as Prefect stored it.

    A subflow's parameters are recorded on the task run that stands for it in the parent flow: their
    consumer is the subflow run."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterParentTaskRunId,
        TaskRunFilter,
        TaskRunFilterFlowRunId,
    )

    edges: set[Edge] = set()
    with get_client(sync_client=True) as client:
        flow_runs = [flow_run_id]
        while flow_runs:
            task_runs = client.read_task_runs(task_run_filter=TaskRunFilter(
                flow_run_id=TaskRunFilterFlowRunId(any_=flow_runs)))
            subflows = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_task_run_id=FlowRunFilterParentTaskRunId(any_=[t.id for t in task_runs])))
            stands_for = {str(f.parent_task_run_id): str(f.id) for f in subflows}
            for tr in task_runs:
                consumer = stands_for.get(str(tr.id), str(tr.id))
                for name, inputs in tr.task_inputs.items():
                    if name == "__parents__":
                        continue
                    for item in inputs:
                        if item.input_type in ("task_run", "flow_run"):
                            edges.add((consumer, stands_for.get(str(item.id), str(item.id))))
            flow_runs = [f.id for f in subflows]
    return edges


def _run_id_of(span: Any) -> str | None:
    attrs = span.attributes
    if span.name.startswith("task "):
        return attrs.get("cicd.pipeline.task.run.id")
    if span.name.startswith("run "):
        return attrs.get("cicd.pipeline.run.id")
    return None


def trace_edges(spans: list[Any]) -> tuple[set[Edge], int, int]:
    """(consumer run, producer run) of every ``result`` link; how many links dangle; how many there are."""
    by_id = {s.span_id: s for s in spans}
    edges: set[Edge] = set()
    dangling = count = 0
    for s in spans:
        for lk in s.links:
            if lk["attributes"].get("pipetrace.link.kind") != "result":
                continue
            count += 1
            target = by_id.get(lk["span_id"])
            if target is None:
                dangling += 1
                continue
            edges.add((str(_run_id_of(s)), str(_run_id_of(target))))
    return edges, dangling, count


def _check(instrumented: Any, flow: Any) -> None:
    state = flow(return_state=True)
    assert state.is_completed(), state
    run_id = str(state.state_details.flow_run_id)
    recorded = recorded_edges(run_id)
    spans = instrumented.spans()
    assert len({s.trace_id for s in spans}) == 1
    links, dangling, _ = trace_edges(spans)
    TOTALS.add(recorded, links, dangling)
    assert dangling == 0
    assert not [f for f in audit(instrumented.store, sources={}).findings if f.kind == DANGLING]
    assert links == recorded, (sorted(links - recorded), sorted(recorded - links))
    assert recorded


@pytest.mark.parametrize("flow", handoff_flows.FLOWS, ids=[f.name for f in handoff_flows.FLOWS])
def test_links_equal_task_inputs(instrumented: Any, native: bool, flow: Any) -> None:  # noqa: ARG001
    _check(instrumented, flow)


def test_links_equal_task_inputs_in_the_process_pool(instrumented: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_PLUGINS_ENABLED", "1")  # spawned workers instrument themselves
    _check(instrumented, handoff_flows.in_processes)
