"""kombu on RabbitMQ, Redis and memory://: send/process spans, batch spans with links, bad headers.

The brokers are shared: queues carry a random suffix, Redis keys (DB 0) a prefix of the test's own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pipetrace
import pytest
from kombu import Connection, Consumer, Exchange, Queue
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pipetrace.integrations import kombu as pk
from pipetrace.store import SpanStore
from shared_services import RABBIT, REDIS, delete_prefixed_keys, key_prefix, redis_options

URLS = {"memory": "memory://", "rabbitmq": RABBIT, "redis": REDIS}
SYSTEM = {"memory": "memory", "rabbitmq": "rabbitmq", "redis": "redis"}


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SpanStore]:
    monkeypatch.setenv("PIPETRACE_HOME", str(tmp_path))
    pipetrace.configure(exporters="store")
    pk.instrument()
    yield SpanStore(tmp_path / "traces.db")
    pk.uninstrument()
    pipetrace.shutdown()


@pytest.fixture
def connect() -> Iterator[Any]:
    """``connect(broker)``: a kombu Connection; on Redis every key of it under this test's prefix."""
    prefix = key_prefix("kombu")

    def make(broker: str) -> Connection:
        return Connection(URLS[broker], transport_options=redis_options(prefix) if broker == "redis" else {})

    yield make
    delete_prefixed_keys(prefix)


def _queue() -> Queue:
    name = f"ptk-{uuid.uuid4().hex[:8]}"
    return Queue(name, Exchange(name, type="direct"), routing_key=name, auto_delete=True)


def _all(store: SpanStore) -> list[Any]:
    pipetrace.force_flush(10)
    out = []
    for (tid,) in store._query("SELECT DISTINCT trace_id FROM spans"):
        out.extend(store.trace(tid))
    return out


@pytest.mark.parametrize("broker", ["memory", "rabbitmq", "redis"])
def test_thousand_messages_in_batches_of_hundred(store: SpanStore, connect: Any, broker: str) -> None:
    q = _queue()
    with connect(broker) as conn:
        with conn.Producer() as prod:
            for i in range(1000):
                prod.publish({"i": i}, exchange=q.exchange, routing_key=q.routing_key, declare=[q],
                             message_id=f"m{i}")
        seen = 0
        for index, batch in enumerate(pk.consume_batches(conn, q, 100, timeout=2.0, max_messages=1000)):
            with pk.process_batch(batch, index=index):
                for message in batch:
                    message.ack()
            seen += len(batch)
        q(conn.default_channel).delete()
    assert seen == 1000
    spans = _all(store)
    sends = {s.span_id: s for s in spans if s.name == f"send {q.exchange.name}"}
    batches = [s for s in spans if s.name == f"process {q.routing_key}"]
    assert len(sends) == 1000 and all(s.kind == "PRODUCER" for s in sends.values())
    assert {s.system for s in sends.values()} == {"kombu"}
    assert len(batches) == 10
    linked = []
    for b in sorted(batches, key=lambda s: s.attributes["pipetrace.batch.index"]):
        assert b.kind == "CONSUMER" and len(b.links) == 100
        assert b.attributes["messaging.batch.message_count"] == 100
        assert b.attributes["messaging.system"] == SYSTEM[broker]
        assert b.system == "kombu"
        assert b.attributes["messaging.operation.type"] == "process"
        assert b.attributes["pipetrace.task.queued_ms"] >= 0
        assert "pipetrace.batch.links_dropped" not in b.attributes
        for lk in b.links:
            assert lk["attributes"]["pipetrace.link.kind"] == "message"
            linked.append(lk["attributes"]["messaging.message.id"])
            assert lk["span_id"] in sends
    assert sorted(linked) == sorted(f"m{i}" for i in range(1000))
    if broker == "rabbitmq":
        assert next(iter(sends.values())).attributes["messaging.rabbitmq.destination.routing_key"] == q.routing_key


@pytest.mark.parametrize("broker", ["memory", "redis"])
def test_callback_consumer_continues_trace_and_survives_garbage(store: SpanStore, connect: Any, broker: str) -> None:
    q = _queue()
    got: list[tuple[Any, int]] = []

    def handle(body: Any, message: Any) -> None:
        from opentelemetry import trace

        got.append((body, trace.get_current_span().get_span_context().span_id))
        message.ack()

    with connect(broker) as conn:
        with conn.Producer() as prod:
            prod.publish({"ok": 1}, exchange=q.exchange, routing_key=q.routing_key, declare=[q])
        # an untraced producer with garbage: kombu's raw channel API bypasses Producer.publish
        channel = conn.default_channel
        for headers in ({"traceparent": "00-garbage-01", "tracestate": "x" * 20000},
                        {"traceparent": b"\xff\xfe", "pipetrace-published-ns": "soon"}, {}):
            msg = channel.prepare_message('{"bad": 1}', content_type="application/json", headers=headers)
            channel.basic_publish(msg, exchange=q.exchange.name, routing_key=q.routing_key)
        with Consumer(conn, queues=[q], callbacks=[handle], accept=["json"]):
            for _ in range(4):
                conn.drain_events(timeout=5)
        q(conn.default_channel).delete()
    assert [b for b, _ in got] == [{"ok": 1}, {"bad": 1}, {"bad": 1}, {"bad": 1}]
    spans = _all(store)
    by_id = {s.span_id: s for s in spans}
    process = sorted((s for s in spans if s.name.startswith("process ")), key=lambda s: s.start_ns)
    assert len(process) == 4
    assert {p.span_id for p in process} == {f"{sid:016x}" for _, sid in got}  # current during the callback
    assert by_id[process[0].parent_span_id].name == f"send {q.exchange.name}"
    for p in process[1:]:
        assert p.parent_span_id is None
        (event,) = [e for e in p.events if e["name"] == "pipetrace.context.missing"]
        assert event["attributes"]["pipetrace.context.reason"]


def test_link_limit_is_never_silently_exceeded() -> None:
    """With a provider at the SDK default of 128 links, batches are capped and overflow is recorded."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    pk.instrument(tracer_provider=provider)
    try:
        q = _queue()
        with Connection("memory://") as conn:
            with conn.Producer() as prod:
                for i in range(300):
                    prod.publish({"i": i}, exchange=q.exchange, routing_key=q.routing_key, declare=[q])
            sizes = []
            for batch in pk.consume_batches(conn, q, 200, timeout=0.5):
                sizes.append(len(batch))
                for message in batch:
                    message.ack()
            assert sizes == [128, 128, 44]
            prod_msgs: list[Any] = []
            with conn.Producer() as prod:
                for i in range(150):
                    prod.publish({"i": i}, exchange=q.exchange, routing_key=q.routing_key, declare=[q])
            bound = q(conn.channel())
            while len(prod_msgs) < 150:
                message = bound.get(accept=["json"])
                assert message is not None
                prod_msgs.append(message)
            with pk.process_batch(prod_msgs):
                for message in prod_msgs:
                    message.ack()
        (big,) = [s for s in exporter.get_finished_spans()
                  if (s.attributes or {}).get("messaging.batch.message_count") == 150]
        assert len(big.links) == 128 and (big.attributes or {})["pipetrace.batch.links_dropped"] == 22
    finally:
        pk.uninstrument()
