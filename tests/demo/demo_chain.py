"""The exact span tree of the cross-system trace (Airflow → Celery → Dagster), asserted from the store."""

from __future__ import annotations

from demo_env import DEMO_QUEUE
from pipetrace.store import SpanRecord

AIRFLOW_DAG = "pt_cross_system"
DAGSTER_JOB = "cross_system_report"
QUEUE = DEMO_QUEUE  # the example's queue name as the tests set it (PIPETRACE_DEMO_QUEUE)
CELERY_TASK = "cross_system.run_report"

# name → (parent name, kind, pipetrace.system)
TREE = {
    f"run {AIRFLOW_DAG}": (None, "SERVER", "airflow"),
    "task extract": (f"run {AIRFLOW_DAG}", "INTERNAL", "airflow"),
    "task hand_off": (f"run {AIRFLOW_DAG}", "INTERNAL", "airflow"),
    "task confirm": (f"run {AIRFLOW_DAG}", "INTERNAL", "airflow"),
    f"send {QUEUE}": ("task hand_off", "PRODUCER", "celery"),
    f"task {CELERY_TASK}": (f"send {QUEUE}", "CONSUMER", "celery"),
    f"run {DAGSTER_JOB}": (f"task {CELERY_TASK}", "SERVER", "dagster"),
    "task fetch": (f"run {DAGSTER_JOB}", "INTERNAL", "dagster"),
    "task validate": (f"run {DAGSTER_JOB}", "INTERNAL", "dagster"),
    "task enrich": (f"run {DAGSTER_JOB}", "INTERNAL", "dagster"),
    "task publish": (f"run {DAGSTER_JOB}", "INTERNAL", "dagster"),
}
# consumer span → (producer span, pipetrace.link.kind) for every data hand-off
LINKS = {
    "task hand_off": {("task extract", "xcom")},
    "task confirm": {("task hand_off", "xcom")},
    "task validate": {("task fetch", "result")},
    "task enrich": {("task fetch", "result")},
    "task publish": {("task validate", "result"), ("task enrich", "result")},
}


def assert_cross_system_trace(spans: list[SpanRecord], messaging_system: str) -> None:
    """One trace, exactly the spans of TREE, each with the right parent, kind and system, and the links."""
    assert len({s.trace_id for s in spans}) == 1
    by_name = {s.name: s for s in spans}
    assert sorted(s.name for s in spans) == sorted(TREE), "one span per name, nothing missing or extra"
    by_id = {s.span_id: s for s in spans}
    for name, (parent, kind, system) in TREE.items():
        span = by_name[name]
        got_parent = by_id[span.parent_span_id].name if span.parent_span_id else None
        assert (got_parent, span.kind, span.attributes.get("pipetrace.system")) == (parent, kind, system), name
        assert span.status != "ERROR", name
    # the chain from the Dagster steps up to the Airflow run, spelled out
    chain, span = [], by_name["task publish"]
    while span is not None:
        chain.append(span.name)
        span = by_id.get(span.parent_span_id) if span.parent_span_id else None
    assert chain == ["task publish", f"run {DAGSTER_JOB}", f"task {CELERY_TASK}", f"send {QUEUE}",
                     "task hand_off", f"run {AIRFLOW_DAG}"]
    for name, expected in LINKS.items():
        got = {(by_id[link["span_id"]].name, link["attributes"].get("pipetrace.link.kind"))
               for link in by_name[name].links}
        assert got == expected, name
    for name in (f"send {QUEUE}", f"task {CELERY_TASK}"):
        attrs = by_name[name].attributes
        assert attrs["messaging.destination.name"] == QUEUE
        assert attrs["messaging.system"] == messaging_system, name
    assert by_name[f"send {QUEUE}"].attributes["messaging.message.id"] == \
        by_name[f"task {CELERY_TASK}"].attributes["cicd.pipeline.task.run.id"]
    run = by_name[f"run {AIRFLOW_DAG}"]
    for span in spans:  # the Airflow run covers the whole chain
        assert run.start_ns <= span.start_ns and span.end_ns <= run.end_ns, span.name
