"""Each example flow in Prefect's ephemeral mode → the exact span tree in the store, with Prefect's
native run telemetry on and off (one span per run and attempt either way, never two)."""

from __future__ import annotations

from typing import Any

import pt_flows
import pytest
from conftest import dedent, tree
from pipetrace import attributes as A
from pipetrace.identity import RunIdentity


def _run(flow, *args):  # noqa: ANN001, ANN202
    state = flow(*args, return_state=True)
    assert state.is_completed(), state
    return state.result(), str(state.state_details.flow_run_id)


def _one_trace(traced, flow_name: str, run_id: str):  # noqa: ANN001, ANN202
    spans = traced.spans()
    assert len({s.trace_id for s in spans}) == 1, "every span of the run in one trace"
    assert len({s.span_id for s in spans}) == len(spans), "no span reported twice"
    ident = RunIdentity("prefect", flow_name, run_id)
    assert spans[0].trace_id == f"{ident.trace_id:032x}"
    root = next(s for s in spans if s.parent_span_id is None)
    assert root.span_id == f"{ident.run_span_id:016x}"
    assert root.kind == "SERVER"
    assert root.attributes[A.PIPELINE_RUN_ID] == run_id
    assert root.attributes["prefect.run.id"] == run_id  # Prefect's native name for it
    assert root.attributes[A.PIPELINE_NAME] == flow_name
    # no duplicate of a cicd.pipeline.* / prefect.run.* value under another name
    assert not {"prefect.flow_run.id", "prefect.flow", "prefect.flow_run.name"} & set(root.attributes)
    assert root.attributes["prefect.run.name"]
    assert root.attributes[A.SYSTEM] == "prefect"
    # no native span with a generated run name survives: only our names
    assert all(s.name.split(" ")[0] in ("run", "task", "batch") for s in spans)
    return spans


def test_fan_in(instrumented, native) -> None:  # noqa: ANN001
    value, run_id = _run(pt_flows.fan_in)
    assert value == 7.5
    spans = _one_trace(instrumented, "pt_fan_in", run_id)
    assert tree(spans) == dedent("""
        run pt_fan_in result=success
          task extract_orders try=1 result=success
          task extract_prices try=1 result=success
          task join try=1 result=success
    """)
    by = {s.name: s for s in spans}
    join = by["task join"]
    assert sorted((lk["span_id"], lk["attributes"][A.LINK_KIND], lk["attributes"]["prefect.input.name"])
                  for lk in join.links) == sorted([
        (by["task extract_orders"].span_id, "result", "orders"),
        (by["task extract_prices"].span_id, "result", "prices")])
    for s in spans:
        if s.name.startswith("task "):
            assert s.parent_span_id == by["run pt_fan_in"].span_id
            assert s.attributes["prefect.run.id"] == s.attributes[A.TASK_RUN_ID]
            assert "prefect.task_run.id" not in s.attributes  # (a third copy of the id, gone)
            assert s.attributes[A.PIPELINE_RUN_ID] == run_id
            assert "prefect.state.type" not in s.attributes  # the last state event's, not repeated
            assert s.events[-1]["attributes"]["prefect.state.type"] == "COMPLETED"
            assert A.QUEUED_MS in s.attributes
            assert s.status == "OK"


def test_fan_in_label_holds_run_span(instrumented) -> None:  # noqa: ANN001
    """Native telemetry on (the default): the flow run's __OTEL_TRACEPARENT label is our run span."""
    from prefect import get_client

    _, run_id = _run(pt_flows.fan_in)
    with get_client(sync_client=True) as client:
        labels = client.read_flow_run(run_id).labels
    ident = RunIdentity("prefect", "pt_fan_in", run_id)
    assert labels["__OTEL_TRACEPARENT"] == f"00-{ident.trace_id:032x}-{ident.run_span_id:016x}-01"
    # service.name per component: the flow process names itself
    spans = instrumented.spans(run_id)
    assert spans and {s.resource["service.name"] for s in spans} == {"prefect-flow"}


def test_mapped(instrumented, native) -> None:  # noqa: ANN001
    value, run_id = _run(pt_flows.mapped, 3)
    assert value == 5
    spans = _one_trace(instrumented, "pt_mapped", run_id)
    assert tree(spans) == dedent("""
        run pt_mapped result=success
          batch square size=3
            task square try=1 i=0 result=success
            task square try=1 i=1 result=success
            task square try=1 i=2 result=success
          task total try=1 result=success
    """)
    by_index = {s.attributes.get(A.MAP_INDEX): s for s in spans if s.name == "task square"}
    total = next(s for s in spans if s.name == "task total")
    assert sorted(lk["span_id"] for lk in total.links) == sorted(s.span_id for s in by_index.values())
    batch = next(s for s in spans if s.name == "batch square")
    assert batch.start_ns <= min(s.start_ns for s in by_index.values())
    assert batch.end_ns >= max(s.end_ns for s in by_index.values())


def test_subflow(instrumented, native) -> None:  # noqa: ANN001
    value, run_id = _run(pt_flows.parent)
    assert value == 3
    spans = _one_trace(instrumented, "pt_parent", run_id)
    assert tree(spans) == dedent("""
        run pt_parent result=success
          run pt_child result=success
            task load try=1 result=success
          task extract_orders try=1 result=success
    """)
    child = next(s for s in spans if s.name == "run pt_child")
    child_run = child.attributes[A.PIPELINE_RUN_ID]
    assert child_run != run_id
    assert child.span_id == f"{RunIdentity('prefect', 'pt_child', child_run).run_span_id:016x}"


def test_task_retried_twice(instrumented, native) -> None:  # noqa: ANN001
    value, run_id = _run(pt_flows.retried, f"retry-{native}")
    assert value == "ok after 3"
    spans = _one_trace(instrumented, "pt_retry", run_id)
    assert tree(spans) == dedent("""
        run pt_retry result=success
          task flaky try=1 result=retry
          task flaky try=2 result=retry
          task flaky try=3 result=success
    """)
    attempts = sorted((s for s in spans if s.name == "task flaky"), key=lambda s: s.attributes[A.TRY_NUMBER])
    assert len({s.attributes[A.TASK_RUN_ID] for s in attempts}) == 1, "three attempts of one task run"
    for failed in attempts[:2]:
        assert failed.status == "ERROR"
        assert failed.attributes[A.ERROR_TYPE] == "RuntimeError"
        assert any(ev["name"] == "exception" for ev in failed.events)
    assert attempts[2].status == "OK"
    assert attempts[0].end_ns <= attempts[1].start_ns <= attempts[1].end_ns <= attempts[2].start_ns
    ident = RunIdentity("prefect", "pt_retry", run_id)
    task_run = attempts[0].attributes[A.TASK_RUN_ID]
    assert [s.span_id for s in attempts] == [
        f"{ident.task_span_id(f'flaky/{task_run}', None, n):016x}" for n in (1, 2, 3)]


def test_user_spans_nest_under_task(instrumented) -> None:  # noqa: ANN001
    """A span started inside a task body is a child of that task's attempt span."""
    from opentelemetry import trace
    from prefect import flow, task

    @task
    def work() -> int:
        with trace.get_tracer("user").start_as_current_span("user work"):
            return 1

    @flow(name="pt_user_spans")
    def f() -> int:
        with trace.get_tracer("user").start_as_current_span("user in flow"):
            pass
        return work()

    _, run_id = _run(f)
    spans = _one_trace_any(instrumented)
    assert tree(spans) == dedent("""
        run pt_user_spans result=success
          task work try=1 result=success
            user work
          user in flow
    """)


def _one_trace_any(traced):  # noqa: ANN001, ANN202
    spans = traced.spans()
    assert len({s.trace_id for s in spans}) == 1
    return spans


@pytest.mark.parametrize("n", [0])
def test_empty_map(instrumented, n: int) -> None:  # noqa: ANN001
    """A .map over nothing: an empty batch, and the flow still succeeds."""
    value, run_id = _run(pt_flows.mapped, n)
    assert value == 0
    spans = _one_trace(instrumented, "pt_mapped", run_id)
    assert tree(spans) == dedent("""
        run pt_mapped result=success
          batch square size=0
          task total try=1 result=success
    """)


def test_async_flow_and_tasks(instrumented, native) -> None:  # noqa: ANN001
    """The async engines go through the same telemetry seam."""
    import asyncio

    from prefect import flow, task

    @task
    async def fetch(i: int) -> int:
        await asyncio.sleep(0.01)
        return i

    @task(retries=1, retry_delay_seconds=0)
    async def once_flaky(values: list[int], key: str) -> int:
        seen = _async_attempts.setdefault(key, 0)
        _async_attempts[key] = seen + 1
        if seen == 0:
            raise RuntimeError("first attempt")
        return sum(values)

    @flow(name="pt_async")
    async def f(key: str) -> int:
        a, b = fetch.submit(1), fetch.submit(2)
        values: list[int] = [await asyncio.to_thread(x.result) for x in (a, b)]  # type: ignore[arg-type]
        return await once_flaky(values, key)

    run: Any = f
    state = asyncio.run(run(f"async-{native}", return_state=True))
    assert state.is_completed(), state
    run_id = str(state.state_details.flow_run_id)
    spans = _one_trace(instrumented, "pt_async", run_id)
    assert tree(spans) == dedent("""
        run pt_async result=success
          task fetch try=1 result=success
          task fetch try=1 result=success
          task once_flaky try=1 result=retry
          task once_flaky try=2 result=success
    """)


_async_attempts: dict[str, int] = {}
