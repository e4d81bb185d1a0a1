"""``dag.test()`` of every example DAG → the exact span tree in the store (real Airflow, in process)."""

from __future__ import annotations

from typing import Any

import _dagrun
from conftest import by_name, link_targets, shape, spans_of
from pipetrace.identity import derive_trace_id
from pipetrace.integrations.airflow.xcom import CARRIER_KEY


def _user_xcoms(dr: Any) -> dict[str, Any]:
    return {k: v for k, v in _dagrun.xcoms(dr.dag_id, dr.run_id).items() if not k.endswith(CARRIER_KEY)}


def test_etl_fan_out_fan_in(store: Any) -> None:
    dr = _dagrun.run("pt_etl")
    spans = spans_of(store, dr.run_id)
    assert shape(spans) == {
        ("run pt_etl", "<root>", "success", None, None),
        ("task extract", "run pt_etl", "success", 1, None),
        ("task transform_sum", "run pt_etl", "success", 1, None),
        ("task transform_max", "run pt_etl", "success", 1, None),
        ("task transform_count", "run pt_etl", "success", 1, None),
        ("task load", "run pt_etl", "success", 1, None),
    }
    assert len(spans) == 6
    assert {s.trace_id for s in spans} == {f"{derive_trace_id('airflow', 'pt_etl', dr.run_id):032x}"}
    named = {name: group[0] for name, group in by_name(spans).items()}
    run = named["run pt_etl"]
    assert run.kind == "SERVER" and run.attributes["cicd.pipeline.run.id"] == dr.run_id
    for t in ("transform_sum", "transform_max", "transform_count"):
        assert link_targets(named[f"task {t}"], spans) == [("task extract", None, "xcom")]
    assert link_targets(named["task load"], spans) == sorted(
        [("task transform_sum", None, "xcom"), ("task transform_max", None, "xcom"),
         ("task transform_count", None, "xcom")], key=repr)
    extract = named["task extract"]
    assert extract.attributes["airflow.dag_id"] == "pt_etl"
    assert extract.attributes["airflow.task_id"] == "extract"
    assert extract.attributes["airflow.task_instance.hostname"]
    assert extract.kind == "INTERNAL" and extract.resource["process.pid"]
    assert extract.resource["service.name"] == "airflow-task"  # the task process names itself
    assert run.start_ns <= extract.start_ns and extract.end_ns <= run.end_ns
    # user-visible XComs are exactly what the DAG returned
    assert _user_xcoms(dr) == {
        "extract[-1]:return_value": [1, 2, 3, 4], "transform_sum[-1]:return_value": 10,
        "transform_max[-1]:return_value": 4, "transform_count[-1]:return_value": 4,
        "load[-1]:return_value": {"total": 10, "max": 4, "count": 4},
        "load[-1]:total": 10, "load[-1]:max": 4, "load[-1]:count": 4,  # multiple_outputs from the dict hint
    }
    # first tries: consumers derive the producers' span ids, so no carrier XCom is written at all
    assert not [k for k in _dagrun.xcoms(dr.dag_id, dr.run_id) if k.endswith(CARRIER_KEY)]


def test_mapped_task_batch(store: Any) -> None:
    dr = _dagrun.run("pt_mapped")
    spans = spans_of(store, dr.run_id)
    assert shape(spans) == {
        ("run pt_mapped", "<root>", "success", None, None),
        ("task list_files", "run pt_mapped", "success", 1, None),
        ("batch process", "run pt_mapped", "success", None, None),
        ("task process", "batch process", "success", 1, 0),
        ("task process", "batch process", "success", 1, 1),
        ("task process", "batch process", "success", 1, 2),
        ("task summarize", "run pt_mapped", "success", 1, None),
    }
    assert len(spans) == 7
    named = by_name(spans)
    (batch,) = named["batch process"]
    assert batch.attributes["pipetrace.batch.size"] == 3
    instances = named["task process"]
    assert batch.start_ns <= min(s.start_ns for s in instances)
    assert batch.end_ns >= max(s.end_ns for s in instances)
    for inst in instances:
        assert link_targets(inst, spans) == [("task list_files", None, "xcom")]
    (summarize,) = named["task summarize"]
    assert link_targets(summarize, spans) == [("task process", i, "xcom") for i in range(3)]
    assert _user_xcoms(dr)["summarize[-1]:return_value"] == 15


def test_failing_then_retried_task(store: Any) -> None:
    dr = _dagrun.run("pt_retry")
    spans = spans_of(store, dr.run_id)
    assert shape(spans) == {
        ("run pt_retry", "<root>", "success", None, None),
        ("task flaky", "run pt_retry", "retry", 1, None),
        ("task flaky", "run pt_retry", "success", 2, None),
        ("task report", "run pt_retry", "success", 1, None),
    }
    attempts = {s.attributes["pipetrace.task.try_number"]: s for s in by_name(spans)["task flaky"]}
    first, second = attempts[1], attempts[2]
    assert first.status == "ERROR" and first.attributes["error.type"] == "ConnectionError"
    assert any(e["name"] == "exception" and "source not ready" in str(e["attributes"]) for e in first.events)
    assert first.attributes["airflow.task_instance.state"] == "up_for_retry"
    assert second.status != "ERROR" and first.end_ns <= second.start_ns
    (report,) = by_name(spans)["task report"]
    assert [lk["span_id"] for lk in report.links] == [second.span_id]  # the attempt whose XCom it read
    # only the retried producer left a carrier (its span id is not the first try's)
    assert [k for k in _dagrun.xcoms(dr.dag_id, dr.run_id) if k.endswith(CARRIER_KEY)] == [f"flaky[-1]:{CARRIER_KEY}"]


def test_never_ran_tasks(store: Any) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exported = InMemorySpanExporter()  # what any exporter (OTLP, console) would receive
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exported))  # type: ignore[attr-defined]
    dr = _dagrun.run("pt_failures")
    spans = spans_of(store, dr.run_id)
    # the failed task reported its own span, so the scheduler's run-end check sends no second copy
    assert [s.name for s in exported.get_finished_spans()].count("task broken") == 1
    assert shape(spans) == {
        ("run pt_failures", "<root>", "failure", None, None),
        ("task choose", "run pt_failures", "success", 1, None),
        ("task taken", "run pt_failures", "success", 1, None),
        ("task not_taken", "run pt_failures", "skip", 0, None),
        ("task broken", "run pt_failures", "failure", 1, None),
        ("task after_broken", "run pt_failures", "cancellation", 0, None),
    }
    named = {name: group[0] for name, group in by_name(spans).items()}
    for name, state in (("task not_taken", "skipped"), ("task after_broken", "upstream_failed")):
        span = named[name]
        assert span.start_ns == span.end_ns and span.attributes["pipetrace.synthetic"] is True
        assert span.attributes["airflow.task_instance.state"] == state
    assert named["task broken"].attributes["error.type"] == "ValueError"
    assert named["run pt_failures"].status == "ERROR"


def test_run_end_reads_rows_not_orm_instances(store: Any) -> None:
    """The run-end pass reads the columns it uses, as ``get_task_instances`` selects them, without building
    an ORM TaskInstance per row (most of its cost at every DAG run's end); a partial DAG's subset is kept."""
    from types import SimpleNamespace

    from airflow.models.taskinstance import TaskInstance
    from pipetrace.integrations.airflow import runs
    from sqlalchemy import event

    dr = _dagrun.run("pt_failures")
    loaded: list[Any] = []

    def on_load(target: Any, _context: Any) -> None:
        loaded.append(target)

    event.listen(TaskInstance, "load", on_load)
    try:
        rows = runs.task_instances(dr)
    finally:
        event.remove(TaskInstance, "load", on_load)
    assert not loaded

    def fields(tis: Any) -> list[tuple[Any, ...]]:
        return [(ti.dag_id, ti.run_id, ti.task_id, ti.map_index, ti.try_number, runs.state_name(ti.state),
                 ti.start_date, ti.end_date) for ti in tis]

    assert fields(rows) == fields(dr.get_task_instances()) and len(rows) == 5
    dr.dag = SimpleNamespace(partial=True, task_ids=["broken", "choose"])
    assert [r.task_id for r in runs.task_instances(dr)] == ["broken", "choose"]


def test_upstream_traceparent_from_conf(store: Any) -> None:
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    dr = _dagrun.run("pt_etl", {"traceparent": f"00-{trace_id}-{span_id}-01"})
    spans = spans_of(store, dr.run_id)
    assert len(spans) == 6 and {s.trace_id for s in spans} == {trace_id}
    (run,) = by_name(spans)["run pt_etl"]
    assert run.parent_span_id == span_id


def test_garbage_traceparent_changes_nothing(store: Any) -> None:
    dr = _dagrun.run("pt_etl", {"traceparent": "00-zz-not-a-trace\x00", "tracestate": 7})
    assert str(dr.state) in ("success", "DagRunState.SUCCESS")
    spans = spans_of(store, dr.run_id)
    assert len(spans) == 6
    assert {s.trace_id for s in spans} == {f"{derive_trace_id('airflow', 'pt_etl', dr.run_id):032x}"}
    assert _user_xcoms(dr)["load[-1]:return_value"] == {"total": 10, "max": 4, "count": 4}


def test_trigger_dag_run_is_one_trace(store: Any) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    parent = _dagrun.run("pt_trigger_parent")
    parent_spans = spans_of(store, parent.run_id)
    assert shape(parent_spans) == {
        ("run pt_trigger_parent", "<root>", "success", None, None),
        ("task prepare", "run pt_trigger_parent", "success", 1, None),
        ("task trigger_child", "run pt_trigger_parent", "success", 1, None),
    }
    (trigger,) = by_name(parent_spans)["task trigger_child"]
    with create_session() as session:
        child_runs = session.query(DagRun).filter(DagRun.dag_id == "pt_trigger_child").all()
        conf = next(dict(r.conf or {}) for r in child_runs
                    if (r.conf or {}).get("traceparent", "").split("-")[2:3] == [trigger.span_id])
    assert conf["source"] == "parent"  # the user's conf is kept
    assert conf["traceparent"] == f"00-{trigger.trace_id}-{trigger.span_id}-01"
    # dag.test() leaves the triggered run queued; run the child with the conf it was given
    child = _dagrun.run("pt_trigger_child", conf)
    child_spans = spans_of(store, child.run_id)
    assert {s.trace_id for s in child_spans} == {trigger.trace_id}
    (child_run,) = by_name(child_spans)["run pt_trigger_child"]
    assert child_run.parent_span_id == trigger.span_id
    assert shape(child_spans) == {  # one trace: the parent run, and the child run under the trigger task
        ("run pt_trigger_parent", "<root>", "success", None, None),
        ("task prepare", "run pt_trigger_parent", "success", 1, None),
        ("task trigger_child", "run pt_trigger_parent", "success", 1, None),
        ("run pt_trigger_child", "task trigger_child", "success", None, None),
        ("task child_work", "run pt_trigger_child", "success", 1, None),
    }


def test_component_of_each_airflow_command() -> None:
    from pipetrace.integrations.airflow.plugin import component_of

    assert component_of(["/venv/bin/airflow", "scheduler"]) == "airflow-scheduler"
    assert component_of(["airflow", "dag-processor", "--verbose"]) == "airflow-dag-processor"
    assert component_of(["airflow", "celery", "worker"]) == "airflow-worker"
    assert component_of(["airflow", "api-server", "--port", "8080"]) == "airflow-api-server"
    assert component_of(["airflow", "dags", "test", "pt_etl"]) is None  # the task process names itself
    assert component_of(["python", "-m", "pytest"]) is None


def test_run_identity_is_worked_out_once_per_run_and_caller() -> None:
    """Every task of a run asks for the run's identity (50 times a 50-task ``dag.test()``): it is kept by
    what decides it, the run and the caller's context in its conf, and nothing else."""
    from pipetrace.integrations.airflow import runs

    ref = runs.run_ref("pt_cache", "r1", {"param": 1})
    assert runs.run_ref("pt_cache", "r1", None) is ref  # no caller in the conf either way: the same run
    tp = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    called = runs.run_ref("pt_cache", "r1", {"traceparent": tp})
    assert called is not ref and called.ident.trace_id == int("1" * 32, 16) and not called.native
    assert runs.run_ref("pt_cache", "r1", {"traceparent": tp, "x": 2}) is called
    assert runs.run_ref("pt_cache", "r2") is not ref and runs.run_ref("pt_cache", "r2").ident.run_id == "r2"
    assert ref.ident.trace_id == runs.run_ref("pt_cache", "r1").ident.trace_id != called.ident.trace_id


def test_airflows_own_tracers_make_no_spans_without_otel_on(store: Any) -> None:
    """Without ``[traces] otel_on`` Airflow's module tracers (``airflow.models.dagrun``, the listener
    manager, the task runner) get no-op tracers from pipetrace's provider: nothing is made, queued or
    dropped for them (they made ~100 spans a 50-task run before), and a library's own tracer still works."""
    from opentelemetry import trace
    from pipetrace.processing import runtime

    removed = runtime.stats().get("transform", {}).get("removed", 0)
    dr = _dagrun.run("pt_etl")
    assert len(spans_of(store, dr.run_id)) == 6
    if isinstance(runtime.provider(), runtime._Provider):  # our own provider: Airflow's tracers are no-ops
        from airflow.models import dagrun

        assert not dagrun.tracer.start_span("dag_run.probe").is_recording()
        assert not trace.get_tracer("airflow.sdk.execution_time.task_runner").start_span("probe").is_recording()
        assert runtime.stats().get("transform", {}).get("removed", 0) == removed  # none made, so none dropped
    assert trace.get_tracer("some.library").start_span("probe").is_recording()
