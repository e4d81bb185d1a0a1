"""``drop_scopes``: an orchestrator's own tracer calls that nobody asked for (Airflow's ``airflow.*``
without ``[traces] otel_on``) are not made at all by pipetrace's provider, and a span made anyway (a
tracer resolved before, a provider not ours) is dropped before any exporter."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NoOpTracer
from pipetrace.adapter import drop_scopes
from pipetrace.processing import runtime


def _refused(name: str) -> bool:
    return name.startswith("test.refused.")


@pytest.fixture
def clean_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_refused_scopes", [])
    monkeypatch.setattr(runtime._state, "transforms", list(runtime._state.transforms))


def test_pipetraces_provider_gives_a_refused_scope_a_no_op_tracer(clean_filters: None) -> None:
    provider = runtime._Provider()
    assert not isinstance(provider.get_tracer("test.refused.dagrun"), NoOpTracer)  # nothing refused yet
    runtime.refuse_scopes(_refused)
    runtime.refuse_scopes(_refused)  # idempotent
    assert runtime._refused_scopes == [_refused]
    tracer = provider.get_tracer("test.refused.dagrun")
    assert isinstance(tracer, NoOpTracer)
    assert not tracer.start_span("dag_run.x").is_recording()
    assert provider.get_tracer("my.library").start_span("kept").is_recording()


def test_a_broken_scope_filter_refuses_nothing(clean_filters: None, caplog: pytest.LogCaptureFixture) -> None:
    def broken(name: str) -> bool:
        raise RuntimeError("boom")

    runtime.refuse_scopes(broken)
    assert runtime._Provider().get_tracer("test.refused.x").start_span("s").is_recording()
    assert not runtime.is_refused("test.refused.x", (broken,))  # the transform's check: keeps the span too
    assert "scope filter failed" in caplog.text


def test_spans_of_a_refused_scope_made_anyway_never_reach_the_store(traced, clean_filters: None) -> None:
    drop_scopes(_refused)
    drop_scopes(_refused)
    earlier = TracerProvider.get_tracer(runtime.provider(), "test.refused.listener")  # resolved before the filter
    with earlier.start_as_current_span("listener.on_task_instance_running"):
        pass
    with runtime.provider().get_tracer("test.kept").start_as_current_span("kept span"):
        pass
    if isinstance(runtime.provider(), runtime._Provider):
        assert not runtime.provider().get_tracer("test.refused.listener").start_span("x").is_recording()
    names = set(traced.by_name())
    assert "kept span" in names
    assert "listener.on_task_instance_running" not in names and "x" not in names
