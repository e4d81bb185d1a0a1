"""Dagster's part of ``pipetrace demo`` (the ``pipetrace.demos`` entry point)."""

from __future__ import annotations

from importlib.metadata import entry_points

from conftest import tree


def test_demo_entry_point_runs_a_traced_job(traced) -> None:  # noqa: ANN001
    (ep,) = [ep for ep in entry_points(group="pipetrace.demos") if ep.name == "dagster"]
    from pipetrace.integrations.dagster import uninstrument

    try:
        trace_id = ep.load()()
    finally:
        uninstrument()  # the demo leaves Dagster instrumented, as `pipetrace demo` wants
    spans = traced.spans(trace_id)
    assert {s.trace_id for s in spans} == {trace_id}
    assert tree(spans, ("dagster.step_key", "pipetrace.task.try_number")) == "\n".join([
        "run demo_dagster_etl",
        "  batch transform",
        "    task transform dagster.step_key=transform[east] pipetrace.task.try_number=1",
        "    task transform dagster.step_key=transform[north] pipetrace.task.try_number=1",
        "    task transform dagster.step_key=transform[south] pipetrace.task.try_number=1",
        "    task transform dagster.step_key=transform[south] pipetrace.task.try_number=2",
        "  task extract dagster.step_key=extract pipetrace.task.try_number=1",
        "  task load dagster.step_key=load pipetrace.task.try_number=1",
    ])


def test_adapter_entry_point_is_registered() -> None:
    (ep,) = [ep for ep in entry_points(group="pipetrace.adapters") if ep.name == "dagster"]
    assert ep.value == "pipetrace.integrations.dagster:instrument"
