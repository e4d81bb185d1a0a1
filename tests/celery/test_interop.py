"""Interop with opentelemetry-instrumentation-celery: both directions across processes, and no
duplicate spans when both are enabled in one process."""

from __future__ import annotations

import time
from typing import Any

from conftest import spans_of

OTEL = {"PIPETRACE_EXAMPLE_OTEL": "1"}
OTEL_SCOPE = "opentelemetry.instrumentation.celery"


def test_otel_producer_continued_by_pipetrace_worker(worker_factory: Any) -> None:
    w = worker_factory("redis")
    ids = w.produce("simple", traced=False, extra_env=OTEL)
    w.stop()
    spans = spans_of(w.home)
    by_id = {s.span_id: s for s in spans}
    (task,) = [s for s in spans if s.name == "task pipeline_app.add"]
    assert task.attributes["cicd.pipeline.task.run.id"] == ids["add"]["id"]
    parent = by_id[task.parent_span_id]
    assert parent.name == "apply_async/pipeline_app.add" and parent.scope == OTEL_SCOPE
    assert parent.trace_id == task.trace_id


def test_pipetrace_producer_continued_by_otel_worker(worker_factory: Any) -> None:
    w = worker_factory("redis", traced=False, extra_env=OTEL)
    ids = w.produce("simple")
    time.sleep(1.0)  # the OTel-only worker has no flush at child exit: let its exporter run
    w.stop()
    spans = spans_of(w.home)
    by_id = {s.span_id: s for s in spans}
    (run,) = [s for s in spans if s.name == "run/pipeline_app.add"]
    assert run.scope == OTEL_SCOPE and run.attributes["celery.task_name"] == "pipeline_app.add"
    parent = by_id[run.parent_span_id]
    assert parent.name.startswith("send ") and parent.attributes["messaging.message.id"] == ids["add"]["id"]
    assert parent.scope == "pipetrace" and parent.trace_id == run.trace_id


def test_both_in_one_process_no_duplicates(worker_factory: Any) -> None:
    w = worker_factory("redis", extra_env=OTEL)
    ids = w.produce("simple", extra_env=OTEL)
    assert ids["add"]["value"] == 5
    w.stop()
    spans = spans_of(w.home)
    assert not [s for s in spans if s.scope == OTEL_SCOPE]
    assert sorted(s.name.split()[0] for s in spans if not s.is_run) == ["send", "task"]  # (+ the run, if closed)
    (task,) = [s for s in spans if s.name.startswith("task ")]
    (send,) = [s for s in spans if s.name.startswith("send ")]
    assert task.parent_span_id == send.span_id
