"""A failure inside pipetrace never fails a step, changes its outputs or leaks a context."""

from __future__ import annotations

import logging

import dynamic
import pytest
import retry
from opentelemetry import trace
from pipetrace.util.ratelimit import reset


class Boom(RuntimeError):
    pass


def _boom(*args: object, **kwargs: object) -> None:
    raise Boom("injected pipetrace failure")


class _ExplodingTracer:
    def start_span(self, *args: object, **kwargs: object) -> None:
        raise Boom("tracer down")

    start_as_current_span = start_span


INJECTIONS = {
    "run info lookup": ("pipetrace.integrations.dagster.runinfo._load", _boom),
    "step span start": ("pipetrace.integrations.dagster.tracker.start_task_span", _boom),
    "core deferred span start": ("pipetrace.spans.begin_span", _boom),
    "input link": ("pipetrace.integrations.dagster.tracker.StepTracker.input_loaded", _boom),
    "step span end": ("pipetrace.integrations.dagster.tracker.end_task_span", _boom),
    "run span": ("pipetrace.integrations.dagster.tracker.run_span", _boom),
    "retry lookup": ("pipetrace.integrations.dagster.events.EventTranslator._restart_try", _boom),
    "core tracer": ("pipetrace.spans.get_tracer", lambda: _ExplodingTracer()),
}


def _step_outcomes(result) -> list[tuple[str | None, str]]:  # noqa: ANN001
    return [(e.step_key, e.event_type_value) for e in result.all_events if e.is_step_event]


@pytest.fixture(scope="module")
def baseline() -> dict[str, object]:
    """Outputs and step outcomes without pipetrace."""
    from pipetrace.integrations.dagster import is_instrumented

    assert not is_instrumented()
    runs = {"dynamic": dynamic.dynamic_job.execute_in_process(), "retry": retry.retry_job.execute_in_process()}
    return {"dynamic": (runs["dynamic"].output_for_node("total"), _step_outcomes(runs["dynamic"])),
            "retry": (runs["retry"].output_for_node("store"), _step_outcomes(runs["retry"]))}


@pytest.mark.parametrize("where", list(INJECTIONS))
def test_pipetrace_failure_never_fails_a_step(where: str, baseline, instrumented, monkeypatch, caplog) -> None:
    target, replacement = INJECTIONS[where]
    monkeypatch.setattr(target, replacement)
    reset()
    with caplog.at_level(logging.WARNING, logger="pipetrace"):
        dyn = dynamic.dynamic_job.execute_in_process()
        rty = retry.retry_job.execute_in_process()
    assert dyn.success and rty.success
    assert (dyn.output_for_node("total"), _step_outcomes(dyn)) == baseline["dynamic"]
    assert (rty.output_for_node("store"), _step_outcomes(rty)) == baseline["retry"]
    assert not trace.get_current_span().get_span_context().is_valid
    assert any(r.name.startswith("pipetrace") for r in caplog.records), "the failure was not reported"
    instrumented.flush()
