"""The consumer side and the run helpers message adapters share (pipetrace.adapter.messaging and the
worker handlers of pipetrace.adapter.message_runs), on a real configured pipetrace."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext
from pipetrace.adapter import message_runs
from pipetrace.adapter.messaging import ProducerRuns, consumer_span, tracer
from pipetrace.identity import RunIdentity

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_consumer_span_is_a_child_of_the_producer_in_the_headers(traced: Any) -> None:
    seen: list[SpanContext | None] = []

    def links(sc: SpanContext | None) -> list[Link]:
        seen.append(sc)
        return []

    consumer_span("process q", {"traceparent": TP}, {"k": 1}, source="t", links=links,
                  root_trace_id=lambda: 1 / 0).end()  # type: ignore[arg-type, return-value]
    (span,) = traced.spans()
    assert span.kind == "CONSUMER" and span.parent_span_id == "b7ad6b7169203331"
    assert span.trace_id == "0af7651916cd43dd8448eb211c80319c" and span.attributes["k"] == 1
    assert seen and seen[0] is not None and seen[0].span_id == 0xB7AD6B7169203331


def test_consumer_span_without_context_joins_the_caller_or_starts_a_derived_root(traced: Any) -> None:
    with tracer().start_as_current_span("caller") as caller:
        from opentelemetry import context as otel_context

        consumer_span("process eager", {}, {}, source="t", caller=otel_context.get_current()).end()
    derived = RunIdentity("celery", "celery", "root-1").trace_id
    consumer_span("process root", {"traceparent": "garbage"}, {}, source="t", root_trace_id=lambda: derived).end()
    spans = {s.name: s for s in traced.spans()}
    eager, root = spans["process eager"], spans["process root"]
    assert eager.trace_id == format(caller.get_span_context().trace_id, "032x") and not eager.events
    assert root.trace_id == format(derived, "032x") and root.parent_span_id is None
    assert [e["name"] for e in root.events] == ["pipetrace.context.missing"]
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_producer_runs_the_first_message_names_the_run_of_its_trace() -> None:
    runs = ProducerRuns(bound=2)
    assert runs.claim(1, "r1", "p1") == ("r1", "p1")
    assert runs.claim(1, "r2", "p2") == ("r1", "p1")
    runs.claim(2, "a", "b")
    runs.claim(3, "c", "d")  # bounded: trace 1 goes first
    assert runs.get(1) is None and runs.claim(1, "r3", "p3") == ("r3", "p3")


def test_worker_handlers_never_raise(monkeypatch: Any) -> None:
    calls: list[str] = []
    monkeypatch.setattr(message_runs, "start_background", lambda: calls.append("start") or 1 / 0)
    monkeypatch.setattr(message_runs, "stop_background", lambda: calls.append("stop"))
    message_runs.worker_ready(sender=None)
    message_runs.worker_shutdown(sender=None)
    message_runs.flush()
    assert calls == ["start", "stop"]


def test_connection_and_app_readers_share_the_cache_on_their_owner() -> None:
    import types

    from pipetrace.adapter.messaging import app_system, connection_system

    transport = types.SimpleNamespace(driver_type="redis")
    connection = types.SimpleNamespace(transport=transport)
    assert connection_system(connection) == "redis" and connection._pipetrace_system == "redis"
    transport.driver_type = "amqp"
    assert connection_system(connection) == "redis"  # cached on the connection
    assert connection_system(types.SimpleNamespace()) == "kombu" and connection_system(None) == "kombu"
    conf = types.SimpleNamespace(broker_url="redis+socket:///tmp/r.sock")
    app = types.SimpleNamespace(conf=conf)
    assert app_system(app) == "redis"
    conf.broker_url = "amqp://h//"
    assert app_system(app) == "redis"  # cached on the app: a Celery config lookup is slow
    assert app_system(types.SimpleNamespace(conf=types.SimpleNamespace(broker_url=None))) == "rabbitmq"
    assert app_system(object()) == "rabbitmq"  # no broker URL to read: Celery's default broker
