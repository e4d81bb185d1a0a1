"""A kombu-only pipeline (producer → consumer that republishes → consumer, no Celery) on real brokers
is one run: closed from the store with its status and counts, listed and opened by its run id."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pipetrace
import pytest
from kombu import Connection, Consumer, Exchange, Queue
from pipetrace.adapter.message_runs import ATTEMPTS, TASKS, close_ended_runs
from pipetrace.cli import app
from pipetrace.integrations import kombu as pk
from pipetrace.store import SpanStore
from shared_services import RABBIT, REDIS, delete_prefixed_keys, key_prefix, redis_options
from typer.testing import CliRunner

URLS = {"rabbitmq": RABBIT, "redis": REDIS}  # Redis: DB 0 under this test's own key prefix


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SpanStore]:
    monkeypatch.setenv("PIPETRACE_HOME", str(tmp_path))
    pipetrace.configure(exporters="store", export_interval_s=0.05)
    pk.instrument()
    yield SpanStore(tmp_path / "traces.db")
    pk.uninstrument()
    pipetrace.shutdown()


def _queue(tag: str) -> Queue:
    name = f"ptkr-{tag}-{uuid.uuid4().hex[:8]}"
    return Queue(name, Exchange(name, type="direct"), routing_key=name, auto_delete=True)


def _pipeline(broker: str, prefix: str, first: Queue, second: Queue, handled: list[str]) -> None:
    """Two orders through two stages: stage one republishes each, stage two fails on invoice 1."""
    with Connection(URLS[broker], transport_options=redis_options(prefix) if broker == "redis" else {}) as conn:
        producer = conn.Producer()

        def stage_one(body: dict[str, int], message: object) -> None:
            producer.publish({"invoice": body["order"]}, exchange=second.exchange, routing_key=second.routing_key,
                             declare=[second])
            message.ack()  # type: ignore[attr-defined]
            handled.append("orders")

        def stage_two(body: dict[str, int], message: object) -> None:
            message.ack()  # type: ignore[attr-defined]
            handled.append("invoices")
            if body["invoice"] == 1:
                raise ValueError("invoice 1 is broken")

        with pipetrace.get_tracer().start_as_current_span("nightly orders"):
            for order in range(2):
                producer.publish({"order": order}, exchange=first.exchange, routing_key=first.routing_key,
                                 declare=[first, second])
        with Consumer(conn.channel(), [first], callbacks=[stage_one]), \
                Consumer(conn.channel(), [second], callbacks=[stage_two]):
            while len(handled) < 4:
                try:
                    conn.drain_events(timeout=5)
                except ValueError:
                    pass  # stage two's failure escapes the callback, as in a real consumer


@pytest.mark.parametrize("broker", ["rabbitmq", "redis"])
def test_kombu_pipeline_is_one_run(store: SpanStore, broker: str, tmp_path: Path) -> None:
    first, second = _queue("orders"), _queue("invoices")
    handled: list[str] = []
    prefix = key_prefix("kombu-runs")
    try:
        _pipeline(broker, prefix, first, second, handled)
    finally:
        if broker == "redis":
            delete_prefixed_keys(prefix)
    pipetrace.force_flush(10)
    assert close_ended_runs(store, settle_s=60) == []  # still settling: not closed yet
    ended = close_ended_runs(store, settle_s=0)
    assert len(ended) == 1
    run = ended[0]
    assert (run.system, run.pipeline, run.result, run.tasks, run.attempts, run.failures) == (
        "kombu", first.name, "failure", 4, 4, 1)
    assert close_ended_runs(store, settle_s=0) == []  # once
    listed = store.runs(system="kombu")
    assert [(r.run_id, r.status, r.in_progress) for r in listed] == [(run.run_id, "failure", False)]
    spans = store.trace(run.run_id)
    run_span = [s for s in spans if s.is_run]
    assert len(run_span) == 1 and run_span[0].attributes[TASKS] == 4 and run_span[0].attributes[ATTEMPTS] == 4
    assert run_span[0].end_ns == max(s.end_ns for s in spans)
    result = CliRunner().invoke(app, ["show", run.run_id], env={"PIPETRACE_HOME": str(tmp_path)})
    assert result.exit_code == 0 and "invoices" in result.output
