"""The end of a Celery/kombu run, decided from stored spans alone (hand-built spans, a real store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipetrace import attributes as A
from pipetrace.adapter.message_runs import ATTEMPTS, FAILURES, TASKS, Pending, RunEnd, Sweeper, close_ended_runs, decide
from pipetrace.store import SpanRecord, SpanStore

S = 10**9
T0 = 1_700_000_000 * S
TRACE = "ab" * 16


def sp(sid: str, parent: str | None, kind: str, start: float, end: float, *, system: str = "celery",
       status: str = "UNSET", **attrs: Any) -> SpanRecord:
    base: dict[str, Any] = {A.SYSTEM: system}
    if system == "celery":
        base.update({A.PIPELINE_NAME: "etl.start", A.PIPELINE_RUN_ID: "run-1"})
    base.update(attrs)
    return SpanRecord(TRACE, sid.rjust(16, "0"), parent.rjust(16, "0") if parent else None,
                      ("send q" if kind == "PRODUCER" else "task t"), kind, T0 + int(start * S), T0 + int(end * S),
                      status, attributes=base)


def attempt(sid: str, sent_by: str, start: float, end: float, result: str, task_id: str, try_number: int = 1,
            **attrs: Any) -> SpanRecord:
    return sp(sid, sent_by, "CONSUMER", start, end, status="ERROR" if result == "failure" else "UNSET",
              **{A.TASK_RESULT: result, A.TASK_RUN_ID: task_id, A.TRY_NUMBER: try_number, **attrs})


def at(seconds: float) -> int:
    return T0 + int(seconds * S)


def test_chain_ends_after_the_settle_time_with_counts() -> None:
    spans = [sp("s1", None, "PRODUCER", 0, 0.01), attempt("t1", "s1", 0.1, 1, "success", "a"),
             sp("s2", "t1", "PRODUCER", 0.9, 0.91), attempt("t2", "s2", 1, 2, "success", "b")]
    assert isinstance(decide(spans, at(3), settle_s=2, timeout_s=60), Pending)  # quiet for 1 s only
    end = decide(spans, at(4.5), settle_s=2, timeout_s=60)
    assert isinstance(end, RunEnd)
    assert (end.result, end.tasks, end.attempts, end.failures, end.pipeline, end.run_id) == (
        "success", 2, 2, 0, "etl.start", "run-1")
    assert (end.start_ns, end.end_ns) == (at(0), at(2))
    # a message still waiting (published, no attempt yet) keeps the run open
    assert isinstance(decide(spans[:3], at(100), settle_s=2, timeout_s=600), Pending)


def test_retries_count_as_attempts_of_one_task_and_wait_for_their_countdown() -> None:
    spans = [sp("s1", None, "PRODUCER", 0, 0.01), attempt("t1", "s1", 0.1, 0.2, "retry", "a", 1),
             sp("s2", "t1", "PRODUCER", 0.15, 0.16, **{"celery.eta": "2099-01-01T00:00:00+00:00"})]
    waiting = decide(spans, at(10_000), settle_s=1, timeout_s=60)
    assert isinstance(waiting, Pending) and waiting.recheck_ns > at(10_000)  # the ETA pushes the timeout
    spans[2].attributes.pop("celery.eta")
    spans.append(attempt("t2", "s2", 5, 6, "failure", "a", 2))
    end = decide(spans, at(10), settle_s=1, timeout_s=60)
    assert isinstance(end, RunEnd) and (end.result, end.tasks, end.attempts, end.failures) == ("failure", 1, 2, 1)


def test_an_error_callback_does_not_hide_a_failure_and_revoked_is_counted() -> None:
    spans = [sp("s1", None, "PRODUCER", 0, 0.01), attempt("t1", "s1", 0.1, 0.2, "failure", "a"),
             sp("s2", "t1", "PRODUCER", 0.15, 0.16), attempt("t2", "s2", 0.3, 0.4, "success", "errback"),
             sp("s3", None, "PRODUCER", 0, 0.01), attempt("t3", "s3", 0.5, 0.5, "cancellation", "c")]
    end = decide(spans, at(10), settle_s=1, timeout_s=60)
    assert isinstance(end, RunEnd) and (end.result, end.failures, end.cancelled, end.tasks) == ("failure", 1, 1, 3)


def test_a_requeued_lost_attempt_is_not_the_end_of_its_message() -> None:
    spans = [sp("s1", None, "PRODUCER", 0, 0.01),
             attempt("lost", "s1", 0.1, 0.2, "failure", "a", **{"pipetrace.celery.requeued": True})]
    assert isinstance(decide(spans, at(10), settle_s=1, timeout_s=60), Pending)
    spans.append(attempt("t1", "s1", 0.3, 0.4, "success", "a"))
    end = decide(spans, at(10), settle_s=1, timeout_s=60)
    assert isinstance(end, RunEnd) and (end.result, end.attempts, end.failures) == ("success", 2, 0)


def test_a_lost_message_times_out() -> None:
    spans = [sp("s1", None, "PRODUCER", 0, 0.01), attempt("t1", "s1", 0.1, 1, "success", "a"),
             sp("s2", "t1", "PRODUCER", 0.9, 0.91)]
    end = decide(spans, at(62), settle_s=1, timeout_s=60)
    assert isinstance(end, RunEnd) and (end.result, end.pending) == ("timeout", 1)


def test_kombu_only_run_is_named_by_its_first_destination_and_trace() -> None:
    spans = [sp("s1", None, "PRODUCER", 0, 0.01, system="kombu", **{A.MESSAGING_DESTINATION: "orders"}),
             sp("p1", "s1", "CONSUMER", 0.1, 0.2, system="kombu"),
             sp("s2", "p1", "PRODUCER", 0.15, 0.16, system="kombu", **{A.MESSAGING_DESTINATION: "invoices"}),
             sp("p2", "s2", "CONSUMER", 0.3, 0.4, system="kombu", status="ERROR")]
    end = decide(spans, at(10), settle_s=1, timeout_s=60)
    assert isinstance(end, RunEnd)
    assert (end.system, end.pipeline, end.run_id, end.result, end.tasks) == ("kombu", "orders", TRACE, "failure", 2)


def test_other_orchestrators_and_closed_runs_are_left_alone() -> None:
    spans = [sp("s1", None, "PRODUCER", 0, 0.01), attempt("t1", "s1", 0.1, 1, "success", "a")]
    airflow = SpanRecord(TRACE, "9" * 16, None, "task x", "INTERNAL", T0, T0 + S, attributes={A.SYSTEM: "airflow"})
    assert decide([*spans, airflow], at(100), settle_s=1, timeout_s=60) is None


def test_sweeper_closes_once_and_the_run_span_opens_by_run_id(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "traces.db")
    now = 1_800_000_000 * S
    base = now - 10 * S
    spans = [SpanRecord(TRACE, r.span_id, r.parent_span_id, r.name, r.kind, r.start_ns - T0 + base,
                        r.end_ns - T0 + base, r.status, attributes=r.attributes)
             for r in (sp("s1", None, "PRODUCER", 0, 0.01), attempt("t1", "s1", 0.1, 1, "failure", "a"))]
    store.write(spans)
    assert store.resolve("run-1") == TRACE  # before the run span exists
    sweeper = Sweeper(store, settle_s=2, timeout_s=60)
    ended = sweeper.sweep(now)
    assert [e.run_id for e in ended] == ["run-1"]
    store.write([e.record() for e in ended])
    store.write([e.record() for e in ended])  # reported twice: one span
    assert sweeper.sweep(now + S) == [] and Sweeper(store, settle_s=2, timeout_s=60).sweep(now + S) == []
    runs = store.runs()
    assert len(runs) == 1 and runs[0].status == "failure" and not runs[0].in_progress
    run = [s for s in store.trace("run-1") if s.is_run]
    assert len(run) == 1 and run[0].attributes[TASKS] == 1 and run[0].attributes[ATTEMPTS] == 1
    assert run[0].attributes[FAILURES] == 1 and store.runs(status="failure")[0].run_id == "run-1"
    assert close_ended_runs(store) == []
    store.close()


def test_the_viewer_runs_list_closes_ended_runs(tmp_path: Path, monkeypatch: Any) -> None:
    from pipetrace.ui.payload import runs_document, trace_document

    store = SpanStore(tmp_path / "traces.db")
    store.write([sp("s1", None, "PRODUCER", 0, 0.01), attempt("t1", "s1", 0.1, 1, "success", "a")])
    assert store.runs()[0].in_progress  # before: listed as running
    monkeypatch.setenv("PIPETRACE_RUN_TIMEOUT", str(10**9))  # the hand-built spans are from 2023
    doc = runs_document(store)
    assert [(r["run_id"], r["status"], r["in_progress"]) for r in doc["runs"]] == [("run-1", "success", False)]
    run = trace_document(store, "run-1")
    assert run is not None and run["run"]["status"] == "success"
    assert run["run"]["counts"] == {"tasks": 1, "attempts": 1, "failures": 0}
    store.close()


def test_a_restarted_closer_finishes_what_the_last_one_saw_open(tmp_path: Path) -> None:
    """State lives in the store: a sweeper that saw the run open goes away (worker restart); a new one
    (another process, another host on a shared store) closes the run once its last message is handled."""
    store = SpanStore(tmp_path / "traces.db")
    now = 1_800_000_000 * S

    def shifted(rec: SpanRecord) -> SpanRecord:
        return SpanRecord(TRACE, rec.span_id, rec.parent_span_id, rec.name, rec.kind, rec.start_ns - T0 + now - 20 * S,
                          rec.end_ns - T0 + now - 20 * S, rec.status, attributes=rec.attributes)

    store.write([shifted(sp("s1", None, "PRODUCER", 0, 0.01)), shifted(attempt("t1", "s1", 0.1, 1, "success", "a")),
                 shifted(sp("s2", "t1", "PRODUCER", 0.9, 0.91))])
    first = Sweeper(store, settle_s=2, timeout_s=600)
    assert first.sweep(now) == [] and TRACE in first.open
    del first  # the worker restarts
    store.write([shifted(attempt("t2", "s2", 5, 6, "success", "b"))])
    second = Sweeper(store, settle_s=2, timeout_s=600)
    ended = second.sweep(now)
    assert [(e.run_id, e.result, e.tasks) for e in ended] == [("run-1", "success", 2)]
    store.close()


def test_messages_consumed_in_a_batch_are_handled_by_its_link() -> None:
    batch = sp("b1", None, "CONSUMER", 0.2, 0.5, system="kombu")
    batch.links = [{"trace_id": TRACE, "span_id": "s1".rjust(16, "0"), "attributes": {A.LINK_KIND: "message"}},
                   {"trace_id": TRACE, "span_id": "s2".rjust(16, "0"), "attributes": {A.LINK_KIND: "message"}}]
    spans = [sp("s1", None, "PRODUCER", 0, 0.01, system="kombu"), sp("s2", None, "PRODUCER", 0, 0.02, system="kombu"),
             batch]
    end = decide(spans, at(10), settle_s=1, timeout_s=60)
    assert isinstance(end, RunEnd) and (end.result, end.pending) == ("success", 0)
    assert isinstance(decide(spans[:2], at(10), settle_s=1, timeout_s=60), Pending)


def test_a_fork_waits_for_a_sweep_and_the_child_has_no_sweeper(tmp_path: Path) -> None:
    import os
    import threading

    from pipetrace.adapter import message_runs

    bg = message_runs.Background(lambda: SpanStore(tmp_path / "traces.db"), interval_s=3600, settle_s=1,
                                 timeout_s=60)
    message_runs._background = bg
    try:
        bg.lock.acquire()  # a sweep in progress: fork must wait for it
        pid_box: list[int] = []
        forking = threading.Thread(target=lambda: pid_box.append(os.fork() or os._exit(
            0 if message_runs._background is None else 1)))  # type: ignore[func-returns-value]
        forking.start()
        forking.join(0.3)
        assert forking.is_alive()  # blocked until the sweep ends
        bg.lock.release()
        forking.join(10)
        (pid,) = pid_box
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0 and not bg.lock.locked()
    finally:
        message_runs._background = None


def test_run_exporters_send_the_run_span_through_the_transforms_to_otlp(traced: Any) -> None:
    """The worker's run closer exports what it closed: redaction/added transforms first, the store skipped
    (the closer writes it), a failed run an ERROR span with the run's derived span id."""
    import pipetrace
    from opentelemetry.sdk.trace import ReadableSpan
    from otlp_receiver import OTLPReceiver, attrs
    from pipetrace.adapter.message_runs import RunExporters
    from pipetrace.processing import runtime

    def tag(span: ReadableSpan) -> ReadableSpan:
        span._attributes = {**(span.attributes or {}), "seen.by": "transform"}  # noqa: SLF001
        return span

    with OTLPReceiver() as receiver:
        settings = pipetrace.configure(home=traced.home, exporters="store,otlp", otlp_endpoint=receiver.endpoint,
                                       export_interval_s=0.05)
        runtime.add_transform(tag)
        end = RunEnd(TRACE, "celery", "etl.start", "run-1", at(0), at(3), "failure", 2, 2, 1, 0)
        export = RunExporters(settings)
        assert len(export.exporters) == 1  # otlp only: the store is written by the closer itself
        export([end])
        got = receiver.wait_for(1)
        export.shutdown()
    assert len(got) == 1
    span = got[0][1]
    assert span.name == A.run_span_name("etl.start") and span.span_id.hex() == end.span_id
    assert span.trace_id.hex() == TRACE and span.status.code == 2  # ERROR
    values = attrs(span.attributes)
    assert values["seen.by"] == "transform" and values[A.PIPELINE_RESULT] == "failure"
    assert SpanStore(traced.home / "traces.db").trace(TRACE) == []  # not through the tracer's store queue
