import time

import pipetrace
import pytest
from opentelemetry import trace
from pipetrace import attributes as A
from pipetrace.identity import RunIdentity

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_task_span_parent_is_derived_run_span_and_user_spans_nest(traced) -> None:
    ident = RunIdentity("python", "etl", "r1")
    with pipetrace.task_span("python", "etl", "r1", "load", try_number=2, attributes={"rows": 10}) as span:
        with pipetrace.get_tracer().start_as_current_span("user work") as user:
            assert trace.get_current_span() is user
        assert trace.get_current_span() is span
    spans = traced.by_name(f"{ident.trace_id:032x}")
    task = spans["task load"][0]
    assert task.span_id == f"{ident.task_span_id('load', None, 2):016x}"
    assert task.parent_span_id == f"{ident.run_span_id:016x}"
    assert task.attributes[A.TASK_RESULT] == "success"
    assert task.attributes[A.TRY_NUMBER] == 2
    assert task.attributes[A.SYSTEM] == "python"
    assert task.attributes[A.PIPELINE_NAME] == "etl"
    assert task.attributes[A.PIPELINE_RUN_ID] == "r1"
    assert task.attributes[A.TASK_NAME] == "load"
    assert task.attributes["rows"] == 10
    assert spans["user work"][0].parent_span_id == task.span_id
    assert task.resource["service.name"]
    assert task.resource["host.name"]
    assert task.resource["process.pid"] > 0


def test_task_span_records_exception_and_reraises(traced) -> None:
    with pytest.raises(KeyError):
        with pipetrace.task_span("python", "etl", "r2", "boom"):
            raise KeyError("missing")
    (task,) = traced.by_name(RunIdentity("python", "etl", "r2").trace_id.to_bytes(16, "big").hex())["task boom"]
    assert task.status == "ERROR"
    assert task.attributes[A.TASK_RESULT] == "failure"
    assert task.attributes[A.ERROR_TYPE] == "KeyError"
    assert [e["name"] for e in task.events] == ["exception"]
    assert "missing" in task.events[0]["attributes"]["exception.message"]


def test_run_span_with_upstream_caller(traced) -> None:
    start = time.time() - 5
    assert pipetrace.run_span("python", "etl", "r3", start=start, end=time.time(), result="success",
                              upstream={"traceparent": TP})
    with pipetrace.task_span("python", "etl", "r3", "t", upstream=TP):
        pass
    spans = traced.by_name("0af7651916cd43dd8448eb211c80319c")
    run = spans["run etl"][0]
    assert run.parent_span_id == "b7ad6b7169203331"
    assert run.kind == "SERVER"
    assert run.attributes[A.PIPELINE_RESULT] == "success"
    assert abs(run.start_ns / 1e9 - start) < 0.01
    assert spans["task t"][0].parent_span_id == run.span_id
    assert traced.store.resolve("r3") == "0af7651916cd43dd8448eb211c80319c"


def test_root_run_span_uses_derived_trace_id(traced) -> None:
    pipetrace.run_span("python", "etl", "r4", start=time.time() - 1, end=time.time(), result="failure",
                       error="worker lost")
    ident = RunIdentity("python", "etl", "r4")
    (run,) = traced.spans("r4")
    assert run.trace_id == f"{ident.trace_id:032x}"
    assert run.span_id == f"{ident.run_span_id:016x}"
    assert run.parent_span_id is None
    assert run.status == "ERROR"


def test_batch_span_and_mapped_tasks(traced) -> None:
    ident = RunIdentity("python", "etl", "r5")
    with pipetrace.task_span("python", "etl", "r5", "fan"):
        with pipetrace.batch_span("chunks", index=3, size=100) as batch:
            with pipetrace.get_tracer().start_as_current_span("row"):
                pass
    for i in range(3):
        with pipetrace.task_span("python", "etl", "r5", "m", map_index=i, batch="m"):
            pass
    pipetrace.record_span(ident, ident.batch_span_id("m"), "batch m", start=time.time() - 1, end=time.time(),
                          parent_span_id=ident.run_span_id, attributes={A.BATCH_SIZE: 3}, synthetic=False)
    spans = traced.by_name("r5") or traced.by_name(f"{ident.trace_id:032x}")
    chunks = spans["batch chunks"][0]
    assert chunks.attributes[A.BATCH_SIZE] == 100 and chunks.attributes[A.BATCH_INDEX] == 3
    assert chunks.parent_span_id == spans["task fan"][0].span_id
    assert spans["row"][0].parent_span_id == chunks.span_id
    mapped = spans["task m"]
    assert sorted(s.attributes[A.MAP_INDEX] for s in mapped) == [0, 1, 2]
    assert {s.parent_span_id for s in mapped} == {spans["batch m"][0].span_id}
    assert spans["batch m"][0].parent_span_id == f"{ident.run_span_id:016x}"
    del batch


def test_links_carry_kind(traced) -> None:
    with pipetrace.task_span("python", "etl", "r6", "producer"):
        carrier = pipetrace.inject()
    with pipetrace.task_span("python", "etl", "r6", "consumer",
                             links=[pipetrace.link(carrier, "xcom"), pipetrace.link("garbage", "xcom")]):
        pass
    spans = traced.by_name(f"{RunIdentity('python', 'etl', 'r6').trace_id:032x}")
    (lk,) = spans["task consumer"][0].links
    assert lk["span_id"] == spans["task producer"][0].span_id
    assert lk["attributes"] == {A.LINK_KIND: "xcom"}


def test_reported_twice_is_one_span_live_wins_over_placeholder(traced) -> None:
    ident = RunIdentity("python", "etl", "r7")
    with pipetrace.task_span("python", "etl", "r7", "t"):
        pass
    traced.flush()
    # the scheduler side later reports the same attempt as a placeholder: the live copy must stay
    pipetrace.record_span(ident, ident.task_span_id("t"), "task t", start=time.time(), end=time.time(),
                          parent_span_id=ident.run_span_id, result="skip")
    spans = traced.spans(f"{ident.trace_id:032x}")
    assert len(spans) == 1
    assert spans[0].attributes[A.TASK_RESULT] == "success"
    # a later live copy replaces an earlier one
    with pipetrace.task_span("python", "etl", "r7", "t", attributes={"second": True}):
        pass
    spans = traced.spans(f"{ident.trace_id:032x}")
    assert len(spans) == 1 and spans[0].attributes.get("second") is True


def test_pipetrace_failure_never_reaches_the_body(traced, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipetrace.spans as spans_mod

    def broken():
        raise RuntimeError("tracer exploded")

    monkeypatch.setattr(spans_mod, "get_tracer", broken)
    ran = []
    with pipetrace.task_span("python", "etl", "r8", "t") as span:
        ran.append(1)
    assert ran == [1] and not span.is_recording()
    with pytest.raises(ValueError):
        with pipetrace.task_span("python", "etl", "r8", "t"):
            raise ValueError("user error passes through")
    assert pipetrace.run_span("python", "etl", "r8", start=0.0, end=1.0, result="success") is False


def test_disabled_emits_nothing(traced, monkeypatch: pytest.MonkeyPatch) -> None:
    pipetrace.configure(home=traced.home, enabled=False)
    with pipetrace.task_span("python", "etl", "r9", "t") as span:
        assert not span.is_recording()
    pipetrace.configure(home=traced.home, exporters="store")
    assert traced.spans() == []


def test_start_task_span_with_a_kept_base_and_name_is_the_span_built_from_scratch(traced) -> None:
    """An adapter's per-run ``base`` (and a span ``name`` of its own) give the span ``start_task_span``
    builds from the run's names; the kept dicts are never changed by the span."""
    from pipetrace.adapter import run_attributes
    from pipetrace.spans import end_task_span, start_task_span

    base = run_attributes("python", "etl", "r9")
    given = {"step": "a.b[x]", "n": 1}
    kept_base, kept_given = dict(base), dict(given)
    for run_id, kw in (("r9", {}), ("r9", {"base": base, "clean_attributes": True, "name": "task a.b"})):
        span = start_task_span("python", "etl", run_id, "a.b[x]", try_number=3 if kw else 2, attributes=given,
                               start_time=1.5, **kw)  # type: ignore[arg-type]
        span.set_attribute("late", "v")
        end_task_span(span, end_time=2.5)
    assert (base, given) == (kept_base, kept_given)
    plain, kept = sorted(traced.spans("r9"), key=lambda s: s.attributes[A.TRY_NUMBER])
    assert plain.name == "task a.b[x]" and kept.name == "task a.b"
    assert {**plain.attributes, A.TRY_NUMBER: 3, A.TASK_RUN_ID: "r9/a.b[x]#3"} == kept.attributes
    assert kept.attributes["late"] == "v" and kept.attributes[A.TASK_RESULT] == "success"
    assert (kept.start_ns, kept.end_ns) == (1_500_000_000, 2_500_000_000)
