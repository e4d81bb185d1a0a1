"""``PIPETRACE_CELERY_OTEL``: who emits Celery spans when opentelemetry-instrumentation-celery is in the
same process. In-process: the handlers are called as Celery's signals would call them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from pipetrace.integrations.celery import interop, publish


@pytest.fixture
def otel_instrumentor() -> Iterator[CeleryInstrumentor]:
    instrumentor = CeleryInstrumentor()
    yield instrumentor
    if interop.otel_active():
        instrumentor.uninstrument()
    interop.teardown()
    interop.setup()  # back to the mode the environment names


def _publish(task_id: str) -> dict[str, Any]:
    headers: dict[str, Any] = {"id": task_id, "task": "app.t", "root_id": task_id}
    publish.before_publish(sender="app.t", body=((), {}, {}), routing_key="q", headers=headers)
    publish.after_publish(sender="app.t", body=((), {}, {}), headers=headers)
    return headers


def test_defer_mode_stands_aside_while_the_otel_instrumentor_is_active(
        traced: Any, monkeypatch: pytest.MonkeyPatch, otel_instrumentor: CeleryInstrumentor) -> None:
    monkeypatch.setenv(interop.ENV, "defer")
    interop.teardown()
    interop.setup()
    assert interop.may_defer and not interop.deferring()  # not active yet: pipetrace traces
    assert "pipetrace-published-ns" in _publish("before")
    otel_instrumentor.instrument()
    assert interop.deferring()
    assert "pipetrace-published-ns" not in _publish("during")  # pipetrace's handler did nothing
    assert [s.name for s in traced.spans()] == ["send q"]


def test_replace_mode_never_defers_and_switches_the_otel_instrumentor_off(
        traced: Any, monkeypatch: pytest.MonkeyPatch, otel_instrumentor: CeleryInstrumentor) -> None:
    monkeypatch.delenv(interop.ENV, raising=False)
    interop.teardown()
    interop.setup()
    otel_instrumentor.instrument()  # its handlers are skipped: pipetrace traces Celery here
    assert not interop.may_defer and not interop.deferring()
    assert "pipetrace-published-ns" in _publish("t1")
    assert [s.name for s in traced.spans()] == ["send q"]  # one span: no second one from the instrumentor
