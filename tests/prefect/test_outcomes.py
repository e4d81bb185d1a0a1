"""Run outcomes on the spans: failures, crashes, timeouts, upstream failures, cached results."""

from __future__ import annotations

import time

import pytest
from conftest import dedent, tree
from pipetrace import attributes as A
from prefect import flow, task
from prefect.cache_policies import INPUTS


def _spans(traced):  # noqa: ANN001, ANN202
    spans = traced.spans()
    assert len({s.span_id for s in spans}) == len(spans)
    return spans


def _final_state(span):  # noqa: ANN001, ANN202
    """The attributes of the span's last state event: the state's name and type live there only (the
    span's attributes do not repeat them)."""
    assert "prefect.state.name" not in span.attributes and "prefect.state.type" not in span.attributes
    return [ev["attributes"] for ev in span.events if "prefect.state.type" in ev["attributes"]][-1]


def test_failed_task_and_skipped_downstream(instrumented, native) -> None:  # noqa: ANN001
    @task
    def boom() -> int:
        raise ValueError("bad input")

    @task
    def after(x: int) -> int:
        return x

    @flow(name="pt_fail")
    def f() -> int:
        return after.submit(boom.submit()).result()  # type: ignore[call-overload]

    state = f(return_state=True)
    assert state.is_failed()
    spans = _spans(instrumented)
    assert tree(spans) == dedent("""
        run pt_fail result=failure
          task after try=1 result=skip
          task boom try=1 result=failure
    """)
    by = {s.name: s for s in spans}
    boom_span = by["task boom"]
    assert boom_span.status == "ERROR"
    assert boom_span.attributes[A.ERROR_TYPE] == "ValueError"
    assert _final_state(boom_span)["prefect.state.type"] == "FAILED"
    exc = next(ev for ev in boom_span.events if ev["name"] == "exception")
    assert "bad input" in exc["attributes"]["exception.message"]
    assert _final_state(by["task after"])["prefect.state.name"] == "NotReady"
    assert by["run pt_fail"].status == "ERROR"


def test_crashed_task(instrumented) -> None:  # noqa: ANN001
    """A BaseException in a task is a crash in Prefect: result error, the exception recorded."""

    class Abandon(BaseException):
        pass

    @task
    def crash() -> None:
        raise Abandon("gone")

    @flow(name="pt_crash")
    def f() -> None:
        crash()

    with pytest.raises(Abandon):
        f()
    spans = _spans(instrumented)
    assert tree(spans) == dedent("""
        run pt_crash result=error
          task crash try=1 result=error
    """)
    crash_span = next(s for s in spans if s.name == "task crash")
    assert _final_state(crash_span)["prefect.state.type"] == "CRASHED"
    assert crash_span.status == "ERROR"
    assert any(ev["name"] == "exception" for ev in crash_span.events)


def test_timed_out_task(instrumented) -> None:  # noqa: ANN001
    """Prefect ends no span for a timed-out sync task; pipetrace ends it at the Failed state's time.
    The timeout error reaches the flow, which Prefect also marks TimedOut."""

    @task(timeout_seconds=0.3)
    def slow() -> None:
        time.sleep(2)

    @flow(name="pt_timeout")
    def f() -> None:
        slow()

    state = f(return_state=True)
    assert state.is_failed()
    spans = _spans(instrumented)
    assert tree(spans) == dedent("""
        run pt_timeout result=timeout
          task slow try=1 result=timeout
    """)
    slow_span = next(s for s in spans if s.name == "task slow")
    assert _final_state(slow_span)["prefect.state.name"] == "TimedOut"
    assert slow_span.status == "ERROR"


def test_cached_result_marked(instrumented) -> None:  # noqa: ANN001
    calls = []

    @task(cache_policy=INPUTS, persist_result=True)
    def expensive(x: int) -> int:
        calls.append(x)
        return x * 10

    @flow(name="pt_cache")
    def f() -> int:
        return expensive(int(time.time() * 1000) % 10**9 and 4242)

    assert f() == 42420
    assert f() == 42420
    assert calls == [4242]
    spans = instrumented.spans()
    tasks = sorted((s for s in spans if s.name == "task expensive"), key=lambda s: s.start_ns)
    assert len(tasks) == 2 and len({s.trace_id for s in tasks}) == 2
    assert runs_tree(spans, tasks[0].trace_id) == dedent("""
        run pt_cache result=success
          task expensive try=1 result=success
    """)
    assert "prefect.task_run.cached" not in tasks[0].attributes
    assert tasks[1].attributes["prefect.task_run.cached"] is True
    assert _final_state(tasks[1])["prefect.state.name"] == "Cached"
    assert tasks[1].attributes[A.TASK_RESULT] == "success"


def runs_tree(spans, trace_id):  # noqa: ANN001, ANN201
    return tree([s for s in spans if s.trace_id == trace_id])


def test_task_outside_flow(instrumented) -> None:  # noqa: ANN001
    """A task called with no flow run is traced as its own span, never an error."""

    @task
    def alone(x: int) -> int:
        return x + 1

    assert alone(1) == 2
    spans = instrumented.spans()
    assert [s.name for s in spans] == ["task alone"]
    assert spans[0].attributes[A.TASK_RESULT] == "success"


def test_cancelled_task_and_flow(instrumented) -> None:  # noqa: ANN001
    """A run that ends Cancelled (here: the task and the flow return Cancelled states)."""
    from prefect.states import Cancelled

    @task
    def stop() -> object:
        return Cancelled(message="operator said stop")

    @flow(name="pt_cancel")
    def f() -> object:
        stop()
        return Cancelled(message="flow stopped")

    state = f(return_state=True)
    assert state.is_cancelled()
    spans = _spans(instrumented)
    assert tree(spans) == dedent("""
        run pt_cancel result=cancellation
          task stop try=1 result=cancellation
    """)
    assert all(_final_state(s)["prefect.state.type"] == "CANCELLED" for s in spans)


_delayed_attempts: list[int] = []


def test_retry_after_a_delay_ends_the_try_at_awaiting_retry(instrumented) -> None:  # noqa: ANN001
    """A retry with a delay passes through AwaitingRetry (SCHEDULED): that state ends the first try, as a
    retry, and its event is the try's last state event (the span's attributes do not repeat it)."""

    @task(retries=1, retry_delay_seconds=1)
    def flaky() -> int:
        _delayed_attempts.append(1)
        if len(_delayed_attempts) == 1:
            raise RuntimeError("first attempt")
        return 7

    @flow(name="pt_delayed_retry")
    def f() -> int:
        return flaky()

    _delayed_attempts.clear()
    assert f() == 7
    spans = _spans(instrumented)
    assert tree(spans) == dedent("""
        run pt_delayed_retry result=success
          task flaky try=1 result=retry
          task flaky try=2 result=success
    """)
    first = next(s for s in spans if s.name == "task flaky" and s.attributes["pipetrace.task.try_number"] == 1)
    assert _final_state(first)["prefect.state.name"] == "AwaitingRetry"
    assert _final_state(first)["prefect.state.type"] == "SCHEDULED"
