"""The run registry and run identity of the adapter API."""

from __future__ import annotations

from pipetrace.adapter.runs import Run, Runs, current_span_context, run_identity
from pipetrace.identity import RunIdentity


def test_run_registry_and_identity() -> None:
    runs = Runs()
    run = runs.add(Run(RunIdentity("test", "pipe", "r4")))
    assert runs.get("r4") is run and (run.pipeline, run.run_id) == ("pipe", "r4")
    assert runs.pop("r4") is run and runs.get("r4") is None
    own = run.ident.run_span_context()
    assert run_identity("test", "pipe", "r4", own).upstream is None  # never its own parent
    caller = RunIdentity("test", "caller", "x").run_span_context()
    assert run_identity("test", "pipe", "r4", caller).trace_id == caller.trace_id
    assert current_span_context() is None


def test_task_attempts_retry_then_succeed(traced) -> None:  # noqa: ANN001
    """Each try is its own span under the batch it belongs to, with its derived id, try number, queue
    wait and late links; a retry after an exception is an error, the success OK; the batch learns the end."""
    import time

    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.trace import Link, StatusCode
    from pipetrace import attributes as A
    from pipetrace.adapter import batches as fanout
    from pipetrace.adapter import record_error
    from pipetrace.adapter.runs import TaskAttempts

    run = Run(RunIdentity("test", "pipe", "r5"))
    member = fanout.Member(run.batches.open("t", Context()), 2)
    attempts = TaskAttempts(run, "t", lambda n: run.ident.task_span_id("t", None, n), {"x": 1}, [], member)
    first = attempts.begin(1)
    attempts.running(first.start_time + 5_000_000)  # type: ignore[attr-defined]
    record_error(first, ValueError("boom"), status=False)
    attempts.end(A.RESULT_RETRY)
    second = attempts.begin(2, time.time_ns(), current=True)
    assert trace.get_current_span() is second
    upstream = RunIdentity("test", "pipe", "r5").span_context(7)
    attempts.add_links([Link(upstream, {A.LINK_KIND: "result"})])
    attempts.end(A.RESULT_SUCCESS, attributes={"state": "Completed"})
    attempts.end(A.RESULT_SUCCESS)  # nothing open: a no-op
    assert trace.get_current_span() is not second
    assert member.batch.end_ns > 0
    spans = {s.span_id: s for s in traced.spans(f"{run.ident.trace_id:032x}")}
    one, two = (spans[f"{run.ident.task_span_id('t', None, n):016x}"] for n in (1, 2))
    assert one.parent_span_id == two.parent_span_id == f"{member.batch.span_id:016x}"
    assert (one.attributes[A.TRY_NUMBER], two.attributes[A.TRY_NUMBER]) == (1, 2)
    assert one.attributes[A.QUEUED_MS] == 5.0 and one.attributes[A.TASK_RESULT] == A.RESULT_RETRY
    assert one.status == StatusCode.ERROR.name and two.status == StatusCode.OK.name
    assert two.attributes["state"] == "Completed" and len(two.links) == 1


def test_outcome_from_a_reported_state(traced) -> None:  # noqa: ANN001
    from opentelemetry.trace import StatusCode
    from pipetrace import attributes as A
    from pipetrace.adapter import get_tracer
    from pipetrace.adapter.errors import mark_outcome

    failed = get_tracer().start_span("failed")
    mark_outcome(failed, A.RESULT_FAILURE, message="it broke", error_type="Failed")
    skipped = get_tracer().start_span("retried without exception")
    mark_outcome(skipped, A.RESULT_RETRY)
    for span in (failed, skipped):
        span.end()
    spans = {s.name: s for s in traced.spans()}
    assert spans["failed"].status == StatusCode.ERROR.name and spans["failed"].status_message == "it broke"
    assert spans["failed"].attributes[A.ERROR_TYPE] == "Failed"
    assert spans["retried without exception"].status == StatusCode.UNSET.name


def test_outcome_and_state_attributes_set_in_one_call() -> None:
    """The result, its error.type and the state's attributes go onto the span in one set_attributes call
    (each call takes the span's lock and checks every value); an error.type already there stays."""
    from unittest import mock

    from pipetrace import attributes as A
    from pipetrace.adapter.runs import finish

    span = mock.Mock(attributes={})
    finish(span, A.RESULT_FAILURE, end_ns=5, error_type="Failed", attributes={"state": "Failed"})
    span.set_attributes.assert_called_once_with({"state": "Failed", A.TASK_RESULT: A.RESULT_FAILURE,
                                                 A.ERROR_TYPE: "Failed"})
    span.set_attribute.assert_not_called()
    raised = mock.Mock(attributes={A.ERROR_TYPE: "ValueError"})
    finish(raised, A.RESULT_FAILURE, end_ns=5, attributes={A.ERROR_TYPE: "kept"})
    raised.set_attributes.assert_called_once_with({A.ERROR_TYPE: "kept", A.TASK_RESULT: A.RESULT_FAILURE})
    raised.end.assert_called_once_with(end_time=5)


def test_run_end_abandons_open_attempts_before_recording_batches(traced) -> None:  # noqa: ANN001
    runs = Runs()
    run = runs.add(Run(RunIdentity("test", "pipe", "r6")))
    batch = run.batches.open("t", run.ident.run_context())
    ended: list[object] = []

    class Open:
        def abandon(self) -> None:
            ended.append(self)
            batch.member_ended(batch.start_ns + 10**9)

    a, b = Open(), Open()
    runs.opened("r6", a)
    runs.opened("r6", b)
    runs.opened("other", Open())
    runs.closed("r6", b)
    runs.end("r6", Open.abandon)
    assert ended == [a] and runs.get("r6") is None
    [span] = traced.spans(f"{run.ident.trace_id:032x}")
    assert span.end_ns == batch.start_ns + 10**9
    runs.abandon_all(Open.abandon)
    assert len(ended) == 2


def test_finish_ends_a_run_span_with_its_result_key_attributes_and_time(traced) -> None:  # noqa: ANN001
    from opentelemetry.trace import StatusCode
    from pipetrace import attributes as A
    from pipetrace.adapter import get_tracer
    from pipetrace.adapter.runs import finish

    span = get_tracer().start_span("run pipe", start_time=1_000)
    finish(span, A.RESULT_FAILURE, key=A.PIPELINE_RESULT, end_ns=5_000, message="flow failed",
           error_type="Failed", attributes={"state": "Failed"})
    out = next(s for s in traced.spans() if s.name == "run pipe")
    assert out.attributes[A.PIPELINE_RESULT] == A.RESULT_FAILURE and A.TASK_RESULT not in out.attributes
    assert out.attributes["state"] == "Failed" and out.attributes[A.ERROR_TYPE] == "Failed"
    assert out.status == StatusCode.ERROR.name and out.status_message == "flow failed"
    assert out.end_ns == 5_000


def test_run_span_ended_by_the_run_like_an_attempt(traced) -> None:  # noqa: ANN001
    """``Run.end`` ends the span ``Run.start_span`` started, with the pipeline result key; once only."""
    from opentelemetry.trace import StatusCode
    from pipetrace import attributes as A

    run = Run(RunIdentity("test", "pipe", "r7"))
    span = run.start_span({"x": 1})
    assert run.span is span
    run.end(A.RESULT_FAILURE, end_ns=span.start_time + 7, message="flow failed",  # type: ignore[attr-defined]
            error_type="Failed", attributes={"state": "Failed"})
    run.end(A.RESULT_SUCCESS)  # nothing open: a no-op
    assert run.span is None
    [out] = traced.spans(f"{run.ident.trace_id:032x}")
    assert out.span_id == f"{run.ident.run_span_id:016x}" and out.end_ns == out.start_ns + 7
    assert out.attributes[A.PIPELINE_RESULT] == A.RESULT_FAILURE and out.attributes["state"] == "Failed"
    assert out.status == StatusCode.ERROR.name and out.status_message == "flow failed"


def test_task_attempts_follow_the_orchestrators_run_count(traced) -> None:  # noqa: ANN001
    """``on_running``: a run count beyond the open try ends it as a retry and begins the next (current),
    as does running with no try open; True once per try; ``on_begin`` sees each try's span."""
    from opentelemetry import trace
    from pipetrace import attributes as A
    from pipetrace.adapter.runs import TaskAttempts

    run = Run(RunIdentity("test", "pipe", "r8"))
    begun: list[object] = []
    attempts = TaskAttempts(run, "t", lambda n: run.ident.task_span_id("t", None, n), {}, [], on_begin=begun.append)
    first = attempts.begin(1)
    assert attempts.on_running(1, first.start_time + 1_000_000) is True  # type: ignore[attr-defined]
    assert attempts.on_running(1, None) is False and attempts.span is first  # reported running again
    assert attempts.on_running(2, None) is True  # the orchestrator's second run: a retry
    second = attempts.span
    assert second is not first and attempts.try_number == 2 and trace.get_current_span() is second
    attempts.end(A.RESULT_RETRY)  # the try ended before the next run was reported
    assert attempts.on_running(2, None) is True and attempts.try_number == 3
    attempts.end(A.RESULT_SUCCESS)
    assert begun[:2] == [first, second] and len(begun) == 3
    spans = {s.attributes[A.TRY_NUMBER]: s for s in traced.spans(f"{run.ident.trace_id:032x}")}
    assert spans[1].attributes[A.TASK_RESULT] == A.RESULT_RETRY and spans[1].attributes[A.QUEUED_MS] == 1.0
    assert spans[2].attributes[A.TASK_RESULT] == A.RESULT_RETRY and spans[3].attributes[A.TASK_RESULT] == "success"


def test_attempts_evicted_from_a_full_registry_are_abandoned() -> None:
    runs = Runs(bound=2)
    ended: list[str] = []
    for name in ("a", "b"):
        assert runs.opened("r9", name, ended.append) == []
    assert runs.opened("r9", "c", ended.append) == ["a"] and ended == ["a"]
    assert runs.opened("r9", "d") == ["b"] and ended == ["a"]  # without ``abandon``: the caller ends them
