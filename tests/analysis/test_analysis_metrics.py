"""Metrics from spans with the CICD names, read back through an InMemoryMetricReader."""

from __future__ import annotations

import pipetrace
import pytest
from analysis_helpers import T0, S
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from pipetrace import attributes as A
from pipetrace.processing import metrics


def points(reader: InMemoryMetricReader) -> dict[str, list]:
    out: dict[str, list] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def test_live_spans_become_cicd_metrics(traced) -> None:
    reader = InMemoryMetricReader()
    processor = metrics.enable(MeterProvider(metric_readers=[reader]))
    assert processor is not None
    try:
        with pipetrace.task_span("python", "etl", "r1", "extract", attributes={A.QUEUED_MS: 250.0}):
            pass
        with pytest.raises(ValueError):
            with pipetrace.task_span("python", "etl", "r1", "load"):
                raise ValueError("boom")
        pipetrace.run_span("python", "etl", "r1", start=T0, end=T0 + 90 * S, result="failure", error="ValueError")
        pipetrace.run_span("python", "etl", "r2", start=T0, end=T0 + 30 * S, result="success")
        traced.flush()
        got = points(reader)
    finally:
        metrics.disable()
    runs = {p.attributes[A.PIPELINE_RESULT]: p for p in got[metrics.RUN_DURATION]}
    assert set(runs) == {"success", "failure"}
    assert runs["failure"].count == 1 and runs["failure"].sum == pytest.approx(90.0)
    assert runs["success"].sum == pytest.approx(30.0)
    assert runs["success"].attributes[A.PIPELINE_NAME] == "etl"
    (err,) = got[metrics.RUN_ERRORS]
    assert err.value == 1 and err.attributes == {A.PIPELINE_NAME: "etl", A.ERROR_TYPE: "ValueError"}
    tasks = {p.attributes[A.TASK_NAME]: p for p in got[metrics.TASK_DURATION]}
    assert set(tasks) == {"extract", "load"} and tasks["load"].attributes[A.TASK_RESULT] == "failure"
    (task_err,) = got[metrics.TASK_ERRORS]
    assert task_err.value == 1 and task_err.attributes[A.TASK_NAME] == "load"
    (wait,) = got[metrics.TASK_QUEUE_WAIT]
    assert wait.sum == pytest.approx(0.25)


def test_backfill_from_store(traced) -> None:
    pipetrace.run_span("python", "nightly", "r9", start=T0, end=T0 + 10 * S, result="success")
    spans = traced.spans("r9")
    reader = InMemoryMetricReader()
    m = metrics.SpanMetrics(MeterProvider(metric_readers=[reader]))
    assert m.record_store(spans) == 1
    (point,) = points(reader)[metrics.RUN_DURATION]
    assert point.sum == pytest.approx(10.0) and point.attributes[A.PIPELINE_NAME] == "nightly"
