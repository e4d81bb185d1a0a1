"""The engine seam: pipetrace's telemetry object takes over the tracer and setting Prefect's own object
already read (looking them up again costs every task run a tracer lookup and a settings read)."""

from __future__ import annotations

from typing import Any


def test_engine_telemetry_reuses_prefects_tracer() -> None:
    from pipetrace.integrations.prefect import hooks
    from pipetrace.integrations.prefect.telemetry import PipetraceRunTelemetry
    from prefect.telemetry.run_telemetry import RunTelemetry

    class Engine:
        _telemetry: Any = RunTelemetry()

    engine = Engine()
    native = engine._telemetry
    hooks._post_init(lambda: None, engine, (), {})
    assert isinstance(engine._telemetry, PipetraceRunTelemetry)
    assert engine._telemetry._tracer is native._tracer
    assert engine._telemetry._enabled == native._enabled
    assert engine._telemetry.engine() is engine


def test_engine_telemetry_becomes_pipetraces_in_place() -> None:
    """The object Prefect built is the one that traces (a second object per task run costs ~10 µs); a
    RunTelemetry subclass that is not Prefect's own is left alone."""
    from pipetrace.integrations.prefect import hooks
    from pipetrace.integrations.prefect.telemetry import PipetraceRunTelemetry
    from prefect.telemetry.run_telemetry import RunTelemetry

    class Engine:
        _telemetry: Any = RunTelemetry()

    engine = Engine()
    native = engine._telemetry
    hooks._post_init(lambda: None, engine, (), {})
    assert engine._telemetry is native and type(native) is PipetraceRunTelemetry
    assert native._pt_open is None and list(native._pt_later) == []

    class Custom(RunTelemetry):
        pass

    other = Engine()
    other._telemetry = custom = Custom()
    hooks._post_init(lambda: None, other, (), {})
    assert type(other._telemetry) is Custom and other._telemetry is custom


def test_run_telemetry_tracer_looked_up_once(instrumented: object) -> None:
    """Prefect's RunTelemetry asks for its tracer at every run; instrumented, it gets the same tracer
    without a new lookup, and uninstrument gives Prefect its own get_tracer back."""
    from opentelemetry import trace
    from pipetrace.integrations.prefect import uninstrument
    from prefect.telemetry import run_telemetry

    first, second = run_telemetry.RunTelemetry(), run_telemetry.RunTelemetry()
    assert first._tracer is second._tracer
    assert first._tracer._instrumentation_scope.name == "prefect"
    uninstrument()
    assert run_telemetry.get_tracer is trace.get_tracer


def test_task_attempt_spans_are_recorded_at_their_end_with_plain_state_events(instrumented: Any) -> None:
    """A task attempt's span is core's deferred span, recorded when it ends: no SDK span is made for it (~40 µs
    a task run less); Prefect's state events on it carry the state type's plain value, which it keeps
    without an SDK span, and reach the store as before."""
    from opentelemetry import trace
    from pipetrace.machinery import DeferredSpan
    from prefect import flow, task

    seen: list[Any] = []

    @task
    def probe() -> int:
        span = trace.get_current_span()
        seen.append((type(span), span._live, [type(e.attributes["prefect.state.type"]) for e in span._events or ()]))
        return 1

    @flow
    def deferred_attempts() -> int:
        return probe()

    assert deferred_attempts() == 1
    ((kind, live, types),) = seen
    assert kind is DeferredSpan and live is None
    assert types and set(types) == {str}  # (Prefect passes its StateType enum)
    instrumented.flush()
    (span,) = [s for s in instrumented.spans() if s.name == "task probe"]
    assert [e["attributes"]["prefect.state.type"] for e in span.events] == ["RUNNING", "COMPLETED"]
    assert span.status == "OK" and span.attributes["cicd.pipeline.task.run.result"] == "success"


def test_task_attempt_attributes_are_handed_over_plain(instrumented: Any) -> None:
    """A task run's attributes are built as the SDK stores them (tags a tuple of str), so the attempt's
    span owns them without cleaning or checking them again at its end; exported as before (tags, labels,
    a renamed run)."""
    from opentelemetry import trace
    from prefect import flow, tags, task

    owned: list[Any] = []

    @task(task_run_name="renamed")
    def probe() -> int:
        owned.append(trace.get_current_span()._owned)
        return 1

    @flow
    def plain_attempts() -> int:
        with tags("a", "b"):
            return probe()

    assert plain_attempts() == 1
    ((attrs,),) = [owned]
    assert attrs is not None and type(attrs["prefect.tags"]) is tuple  # the span's own dict (owned)
    assert sorted(attrs["prefect.tags"]) == ["a", "b"]
    instrumented.flush()
    (span,) = [s for s in instrumented.spans() if s.name == "task probe"]
    assert sorted(span.attributes["prefect.tags"]) == ["a", "b"] and span.attributes["prefect.run.name"] == "renamed"
    assert span.attributes["prefect.run.type"] == "task" and span.attributes["pipetrace.task.try_number"] == 1
    assert span.status == "OK" and span.attributes["cicd.pipeline.task.run.result"] == "success"


def test_native_attributes_plain_only_when_the_sdk_would_store_them_unchanged() -> None:
    """A label the SDK would clean (a str subclass) or drop (an empty key) leaves the attributes to the
    span's own checks; plain ones are handed over as they are."""
    import enum
    from types import SimpleNamespace

    from pipetrace.integrations.prefect import runs

    class Mode(str, enum.Enum):
        FAST = "fast"

    def run(labels: dict[str, Any]) -> Any:
        return SimpleNamespace(name="r-1", tags=["x"], labels=labels)

    attrs, plain = runs.native_attributes(run({"team": "data", "n": 3, "__OTEL_TRACEPARENT": "00-x"}), "id", "task",
                                          {"i": 1})
    assert plain and attrs == {"prefect.run.name": "r-1", "prefect.run.type": "task", "prefect.run.id": "id",
                               "prefect.tags": ("x",), "prefect.run.parameter.i": "int", "team": "data", "n": 3}
    assert not runs.native_attributes(run({"mode": Mode.FAST}), "id", "task", None)[1]
    assert not runs.native_attributes(run({"": "v"}), "id", "task", None)[1]
    assert runs.native_attributes(run({"obj": object}), "id", "task", None)[1]  # (made a str here: plain)


def test_result_of_states() -> None:
    """The cicd result of a Prefect state, its type's plain value read from the enum member."""
    from types import SimpleNamespace

    from pipetrace import attributes as A
    from pipetrace.integrations.prefect import runs
    from prefect.client.schemas.objects import StateType
    from prefect.states import AwaitingRetry, Completed, Crashed, Failed, Pending

    cases = [(Completed(), A.RESULT_SUCCESS), (Completed(name="Cached"), A.RESULT_SUCCESS),
             (Failed(), A.RESULT_FAILURE), (Failed(name="TimedOut"), A.RESULT_TIMEOUT), (Crashed(), A.RESULT_ERROR),
             (Pending(name="NotReady"), A.RESULT_SKIP), (AwaitingRetry(), A.RESULT_RETRY)]
    assert [runs.result_of(state) for state, _ in cases] == [want for _, want in cases]
    assert runs.result_of(SimpleNamespace(type=StateType.COMPLETED, name=None)) == A.RESULT_SUCCESS


def test_input_links_looked_up_only_for_task_runs_with_upstream_runs(instrumented: Any, monkeypatch: Any) -> None:
    """A task run whose inputs are plain values has no upstream run to link: its start skips the input-link
    walk; a task run consuming another's result still gets its ``result`` link."""
    from pipetrace.integrations.prefect import links
    from prefect import flow, task

    calls: list[int] = []
    real = links.input_links

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(links, "input_links", counted)

    @task
    def make(i: int) -> int:
        return i

    @task
    def use(value: int) -> int:
        return value + 1

    @flow
    def values_then_result() -> int:
        return use.submit(make.submit(1)).result()

    assert values_then_result() == 2
    assert len(calls) == 2  # the flow run's start and the consuming task run's (none for make(1))
    (span,) = [s for s in instrumented.spans() if s.name == "task use"]
    assert [lk["attributes"]["pipetrace.link.kind"] for lk in span.links] == ["result"]
