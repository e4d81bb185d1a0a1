"""Upstream context from the run tags, user spans nesting under the step, failures and steps that
never ran."""

from __future__ import annotations

import logging

import fan_in
from conftest import by_step, tree
from dagster import In, Nothing, job, op
from opentelemetry import trace
from pipetrace import attributes as A
from pipetrace.identity import RunIdentity
from pipetrace.util.ratelimit import reset

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_traceparent_tag_makes_the_run_a_child_of_the_caller(instrumented) -> None:
    result = fan_in.fan_in_job.execute_in_process(tags={"traceparent": TP})
    assert result.success
    spans = instrumented.spans("0af7651916cd43dd8448eb211c80319c")
    assert {s.trace_id for s in spans} == {"0af7651916cd43dd8448eb211c80319c"}
    run = next(s for s in spans if s.name == "run fan_in_job")
    assert run.parent_span_id == "b7ad6b7169203331"
    steps = by_step(spans)
    assert len(steps) == 5
    assert {s.parent_span_id for s in steps.values()} == {run.span_id}
    # links point into the same (caller's) trace
    assert {lk["trace_id"] for lk in steps[("combine", 1)].links} == {"0af7651916cd43dd8448eb211c80319c"}


def test_garbage_traceparent_gives_a_fresh_trace_and_a_warning(instrumented, caplog) -> None:
    reset()
    with caplog.at_level(logging.WARNING, logger="pipetrace"):
        result = fan_in.fan_in_job.execute_in_process(tags={"traceparent": "00-not-a-traceparent-zz"})
    assert result.success
    assert result.output_for_node("combine") == 6
    assert any("traceparent" in r.getMessage() for r in caplog.records if r.name.startswith("pipetrace"))
    ident = RunIdentity("dagster", "fan_in_job", result.run_id)
    spans = instrumented.spans(result.run_id)
    assert {s.trace_id for s in spans} == {f"{ident.trace_id:032x}"}
    run = next(s for s in spans if s.name == "run fan_in_job")
    assert run.parent_span_id is None
    assert len(by_step(spans)) == 5


@op
def observed() -> str:
    with trace.get_tracer("user").start_as_current_span("user work") as span:
        span.set_attribute("rows", 3)
    return format(trace.get_current_span().get_span_context().span_id, "016x")


@op
def after(step_span: str) -> str:
    return step_span


@job
def nesting_job() -> None:
    after(observed())


def test_step_span_is_current_while_the_op_runs(instrumented) -> None:
    result = nesting_job.execute_in_process()
    assert result.success
    spans = instrumented.spans(result.run_id)
    assert tree(spans) == "\n".join([
        "run nesting_job",
        "  task after dagster.step_key=after",
        "  task observed dagster.step_key=observed",
        "    user work",
    ])
    steps = by_step(spans)
    assert result.output_for_node("observed") == steps[("observed", 1)].span_id
    assert not trace.get_current_span().get_span_context().is_valid  # nothing left attached


@op
def linked(step_span: str) -> tuple:
    """What this step's own span is while it runs, its input already loaded (and linked)."""
    span = trace.get_current_span()
    return type(span).__name__, getattr(span, "_live", "?"), len(getattr(span, "_added", None) or ())


@job
def deferred_job() -> None:
    linked(observed())


def test_step_span_is_a_deferred_span_whose_input_links_reach_the_store(instrumented) -> None:
    """No SDK span for a step: it stays deferred while it runs (its input link kept on it, not making it
    the SDK's span), and the link is in the stored span, as the SDK's span would have it."""
    result = deferred_job.execute_in_process()
    assert result.success
    assert result.output_for_node("linked") == ("DeferredSpan", None, 1)
    steps = by_step(instrumented.spans(result.run_id))
    (lk,) = steps[("linked", 1)].links
    assert lk["span_id"] == steps[("observed", 1)].span_id and lk["trace_id"] == steps[("observed", 1)].trace_id
    assert lk["attributes"] == {A.LINK_KIND: "result", "dagster.input": "step_span", "dagster.output": "result"}
    assert steps[("linked", 1)].parent_span_id == steps[("observed", 1)].parent_span_id


class BrokenSource(Exception):
    pass


@op
def source() -> int:
    raise BrokenSource("upstream system down")


@op
def transform(value: int) -> int:
    return value


@op(ins={"after": In(Nothing)})
def report() -> None:
    return None


@op
def independent() -> int:
    return 1


@job
def failing_job() -> None:
    report(after=transform(source()))
    independent()


def test_failed_step_and_steps_that_never_ran(instrumented) -> None:
    result = failing_job.execute_in_process(raise_on_error=False)
    assert not result.success
    spans = instrumented.spans(result.run_id)
    assert tree(spans, ("dagster.step_key", A.TASK_RESULT, "dagster.skip_reason")) == "\n".join([
        "run failing_job",
        "  task independent dagster.step_key=independent cicd.pipeline.task.run.result=success",
        "  task report dagster.step_key=report cicd.pipeline.task.run.result=skip"
        " dagster.skip_reason=upstream_failed",
        "  task source dagster.step_key=source cicd.pipeline.task.run.result=failure",
        "  task transform dagster.step_key=transform cicd.pipeline.task.run.result=skip"
        " dagster.skip_reason=upstream_failed",
    ])
    run = next(s for s in spans if s.name == "run failing_job")
    assert run.status == "ERROR"
    assert run.attributes[A.PIPELINE_RESULT] == "failure"
    assert run.attributes[A.ERROR_TYPE] == "STEP_FAILURE"
    steps = by_step(spans)
    failed = steps[("source", 1)]
    assert failed.status == "ERROR"
    assert failed.attributes[A.ERROR_TYPE] == "BrokenSource"
    assert "upstream system down" in failed.status_message
    assert steps[("transform", 1)].attributes.get(A.SYNTHETIC) is True
