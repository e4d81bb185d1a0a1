"""PIPETRACE_METRICS switches span-derived metrics on for the process (and off again on reconfigure)."""

import time

import pipetrace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from pipetrace.processing import metrics


def test_metrics_setting_adds_and_removes_the_processor(traced, monkeypatch) -> None:
    reader = InMemoryMetricReader()
    monkeypatch.setattr(metrics, "default_meter_provider", lambda: MeterProvider(metric_readers=[reader]))
    monkeypatch.setenv("PIPETRACE_METRICS", "1")
    pipetrace.configure(home=traced.home, exporters="store")
    assert metrics._enabled is not None  # noqa: SLF001
    pipetrace.run_span("python", "metered", "m1", start=time.time() - 2, end=time.time(), result="failure")
    names = {m.name for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
             for m in sm.metrics}
    assert {"cicd.pipeline.run.duration", "cicd.pipeline.run.errors"} <= names
    monkeypatch.setenv("PIPETRACE_METRICS", "0")
    pipetrace.configure(home=traced.home, exporters="store")
    assert metrics._enabled is None  # noqa: SLF001
