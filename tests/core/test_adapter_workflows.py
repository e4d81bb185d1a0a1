"""Workflows of a task queue (pipetrace.adapter.workflows): the run carried in message headers, derived
attempt span ids, links to other messages' attempts, attempt spans live and after the fact."""

from __future__ import annotations

import contextvars
import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanContext, TraceFlags
from pipetrace import attributes as A
from pipetrace.adapter import Attempts
from pipetrace.adapter.messaging import PUBLISHED_HEADER, tracer
from pipetrace.adapter.workflows import Running, Workflows
from pipetrace.identity import RunIdentity, derive_task_span_id

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE = 0x0AF7651916CD43DD8448EB211C80319C


class Message:
    """A plain type whose attributes are the message (as Celery's task ``Context``)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


def flows() -> Workflows:
    return Workflows("q", pipeline_header="q_pipeline", run_header="q_run", links_header="q_links",
                     plain=(f"{__name__}:Message",), task_name=lambda task, request: f"t.{task}")


def test_headers_name_the_run_and_pipeline_else_the_defaults() -> None:
    wf = flows()
    values = wf.read(Message(traceparent=TP, q_pipeline="etl", q_run="run-1", other=1, headers={"q_links": "a"}))
    assert values == {"traceparent": TP, "q_pipeline": "etl", "q_run": "run-1", "q_links": "a"}
    assert wf.pipeline(values, "first") == "etl" and wf.run_id(values, "root") == "run-1"
    bad = {"q_pipeline": "x" * 500, "q_run": "\x00"}  # any producer writes them: unusable ones are ignored
    assert wf.pipeline(bad, "first") == "first" and wf.run_id(bad, "root") == "root"


def test_attempt_span_ids_are_derived_from_the_message_id_and_try() -> None:
    wf = flows()
    assert wf.attempt_span_id("m1", 2) == derive_task_span_id("q", "q", "m1", "attempt", None, 2)
    assert wf.attempt_span_id("m1", 1) != wf.attempt_span_id("m1", 2) != wf.lost_span_id("m1", 7, 1.5, 2)
    assert wf.run_identity("r").trace_id == RunIdentity("q", "q", "r").trace_id


def test_attempt_links_point_at_each_first_attempt_in_the_joined_trace(traced: Any) -> None:
    wf = flows()
    joined = SpanContext(TRACE, 1, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    links = wf.attempt_links("a,,b", joined)
    assert [(lk.context.trace_id, lk.context.span_id) for lk in links] == [
        (TRACE, wf.attempt_span_id("a", 1)), (TRACE, wf.attempt_span_id("b", 1))]
    assert links[0].attributes == {A.LINK_KIND: "result", A.MESSAGING_MESSAGE_ID: "a"}
    assert wf.attempt_links("a", None) == [] and wf.attempt_links("", joined) == []
    assert len(wf.attempt_links(",".join(str(i) for i in range(5000)), joined)) == 1024  # the provider's limit


def test_attempt_span_joins_the_producer_with_workflow_attributes_and_links(traced: Any) -> None:
    wf = flows()
    values = {"traceparent": TP, PUBLISHED_HEADER: "1000000", "q_run": "run-9", "q_links": "h1"}
    wf.attempt_span("work", "m1", 2, "root", values, {"mine": 1}, now_ns=3_000_000, map_index=4).end()
    (span,) = traced.spans()
    assert span.name == "task work" and span.kind == "CONSUMER" and span.parent_span_id == "b7ad6b7169203331"
    assert span.span_id == f"{wf.attempt_span_id('m1', 2):016x}"
    attrs = span.attributes
    assert attrs["mine"] == 1 and attrs[A.PIPELINE_NAME] == "work" and attrs[A.PIPELINE_RUN_ID] == "run-9"
    assert attrs[A.TASK_RUN_ID] == "m1" and attrs[A.TRY_NUMBER] == 2 and attrs[A.MAP_INDEX] == 4
    assert attrs[A.QUEUED_MS] == 2.0
    assert [lk["span_id"] for lk in span.links] == [f"{wf.attempt_span_id('h1', 1):016x}"]


def test_attempt_span_without_context_is_a_root_of_the_runs_derived_trace(traced: Any) -> None:
    wf = flows()
    wf.attempt_span("work", "m1", 1, "root-1", {"q_links": "h1"}, {}, now_ns=1).end()
    (span,) = traced.spans()
    assert span.trace_id == f"{wf.run_identity('root-1').trace_id:032x}" and span.parent_span_id is None
    assert not span.links  # a new root joins no trace the header tasks are known to be in


def test_record_attempt_of_an_unrun_message_has_its_id_and_queue_wait(traced: Any) -> None:
    wf = flows()
    values = {"traceparent": TP, PUBLISHED_HEADER: "1", "q_pipeline": "etl"}
    wf.record_attempt("work", "m1", values, 1, "root", A.RESULT_CANCELLATION, {"why": "revoked"}, unrun=True)
    began = time.time_ns() - 10**9
    wf.record_attempt("lost", "m2", {}, 3, None, A.RESULT_FAILURE, {}, start=began, error=RuntimeError("gone"))
    spans = {s.name: s for s in traced.spans()}
    unrun, lost = spans["task work"], spans["task lost"]
    assert unrun.span_id == f"{wf.attempt_span_id('m1', 1):016x}" and unrun.parent_span_id == "b7ad6b7169203331"
    assert unrun.attributes[A.MESSAGING_MESSAGE_ID] == "m1" and A.QUEUED_MS in unrun.attributes
    assert unrun.attributes[A.PIPELINE_NAME] == "etl" and unrun.attributes["why"] == "revoked"
    assert unrun.attributes[A.TASK_RESULT] == A.RESULT_CANCELLATION and unrun.attributes[A.SYNTHETIC] is True
    assert lost.start_ns == began and lost.attributes[A.PIPELINE_RUN_ID] == "m2" and lost.status == "ERROR"
    assert lost.trace_id == f"{wf.run_identity('m2').trace_id:032x}" and A.MESSAGING_MESSAGE_ID not in lost.attributes


def test_a_publish_belongs_to_the_running_attempt_else_the_producers_trace_else_its_own_run(traced: Any) -> None:
    wf = flows()
    assert wf.run_of_publish({}, "first", "m1", "m1", otel_context.get_current()) == ("first", "m1")
    with tracer().start_as_current_span("block"):
        ctx = otel_context.get_current()
        assert wf.run_of_publish({}, "a", "m2", "m2", ctx) == ("a", "m2")  # the first message names the run
        assert wf.run_of_publish({}, "b", "m3", "m3", ctx) == ("a", "m2")
    running = Running(trace.INVALID_SPAN, wf, "x", Message(q_pipeline="p", q_run="r"), "root")
    try:
        assert wf.run_of_publish({}, "c", "m4", "m4", otel_context.get_current()) == ("p", "r")
    finally:
        running.close()
    assert wf.current.get() is None


def test_stamp_writes_only_what_a_worker_would_not_assume(traced: Any) -> None:
    wf = flows()
    span = tracer().start_span("send")
    headers: dict[str, Any] = {"headers": {}}
    wf.stamp(headers, span, 7, otel_context.get_current(), name="t", root_id="m", pipeline="t", run_id="m")
    assert "traceparent" in headers and headers[PUBLISHED_HEADER] == "7"
    assert "q_pipeline" not in headers and "q_run" not in headers
    resent = {"q_pipeline": "stale", "headers": {}}  # a retried message keeps its headers: overwritten
    wf.stamp(resent, span, 7, otel_context.get_current(), name="t", root_id="m", pipeline="t", run_id="r")
    assert resent["q_pipeline"] == "t" and resent["q_run"] == "r" and resent["headers"]["q_run"] == "r"


def test_running_is_current_until_closed_and_reads_its_message_once_asked(traced: Any) -> None:
    wf = flows()
    span = tracer().start_span("attempt")
    registry: Attempts[str] = Attempts()
    request = Message(q_run="run-1")
    running = registry.add("m1", Running(span, wf, "work", request, "root"))
    assert trace.get_current_span() is span and wf.current.get() is running
    assert running.pipeline == "t.work" and running.run_id == "run-1"  # the task's name: no header
    request.q_run = "changed"
    assert running.run_id == "run-1"  # read once
    assert registry.pop("m1") is running
    assert trace.get_current_span() is trace.INVALID_SPAN and wf.current.get() is None


def test_running_closed_in_another_context_clears_the_workflow_there() -> None:
    wf = flows()
    running = contextvars.copy_context().run(Running, trace.INVALID_SPAN, wf, "t", Message(), "root")
    wf.current.set(running)
    running.close()  # its tokens belong to the other context: no error, and nothing left current here
    assert wf.current.get() is None
