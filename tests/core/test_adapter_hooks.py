"""The adapter API pieces the message adapters (Celery, kombu) share: signal and patch tables, the
guarded batch span, send spans between two signals, expected errors, the registry's ``add``, the broker
name of an app or a connection."""

from __future__ import annotations

import logging
import sys
import types
from typing import Any

import pytest
from opentelemetry import trace
from pipetrace import attributes as A
from pipetrace.adapter import Attempt, Attempts, Patches, Signals, guarded_span, record_error
from pipetrace.adapter.headers import delivered_to
from pipetrace.adapter.messaging import ProducerRuns, Sends, deferred_span, messaging_system, tracer

log = logging.getLogger("test")


class Signal:
    def __init__(self, name: str) -> None:
        self.name = name
        self.receivers: dict[str, Any] = {}

    def connect(self, receiver: Any, weak: bool, dispatch_uid: str) -> None:
        assert weak is False
        self.receivers[dispatch_uid] = receiver

    def disconnect(self, receiver: Any, dispatch_uid: str) -> None:
        self.receivers.pop(dispatch_uid, None)


def on_start(**_: Any) -> None:
    pass


def test_signals_connect_and_disconnect_the_whole_table_once() -> None:
    start, stop = Signal("start"), Signal("stop")
    table = Signals(lambda: [(start, on_start), (stop, on_start)])
    table.connect()
    table.connect()  # idempotent: one receiver per (receiver, signal)
    assert list(start.receivers.values()) == [on_start] and len(stop.receivers) == 1
    table.disconnect()
    assert not start.receivers and not stop.receivers


def test_patches_wrap_and_restore_methods_named_by_module(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("fake_library")

    class Client:
        def send(self, x: int) -> int:
            return x

    module.Client = Client  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_library", module)
    patches = Patches("test", [("fake_library", "Client", "send",
                                lambda wrapped, inst, args, kw: wrapped(*args, **kw) + 1)])
    patches.apply()
    assert Client().send(1) == 2
    patches.undo()
    assert Client().send(1) == 1 and "send" in vars(Client)


def test_guarded_span_runs_the_block_even_when_the_span_cannot_start(traced: Any,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    with guarded_span(lambda: 1 / 0, log, "test-guarded", "no batch span") as span:  # type: ignore[arg-type, return-value]
        assert span is trace.INVALID_SPAN
    assert "no batch span" in caplog.text
    seen: list[Any] = []
    with pytest.raises(KeyError), guarded_span(lambda: tracer().start_span("batch q"), log, "k", "w",
                                               before_end=seen.append) as span:
        assert trace.get_current_span() is span
        raise KeyError("in the block")
    (record,) = traced.spans()
    assert record.name == "batch q" and record.status == "ERROR" and seen == [span]


def test_a_batch_span_is_named_after_the_run_its_first_member_named(traced: Any) -> None:
    runs = ProducerRuns()
    span = tracer().start_span("batch group")
    runs.name_span(span)
    assert A.PIPELINE_RUN_ID not in span.attributes  # type: ignore[attr-defined]
    runs.claim(span.get_span_context().trace_id, "run-1", "etl")
    runs.name_span(span)
    assert span.attributes[A.PIPELINE_RUN_ID] == "run-1"  # type: ignore[attr-defined]
    assert span.attributes[A.PIPELINE_NAME] == "etl"  # type: ignore[attr-defined]


def test_sends_end_confirmed_failed_and_evicted_publishes(traced: Any) -> None:
    sends = Sends("unconfirmed", bound=1)
    for key in ("a", "b", "c"):
        sends.begin(key, deferred_span(tracer(), f"send {key}"))
    sends.end("b")  # evicted already: nothing left to end
    sends.fail("c", ConnectionError("refused"))
    sends.end(None)
    spans = {s.name: s for s in traced.spans()}
    assert spans["send a"].attributes["unconfirmed"] is True and spans["send b"].attributes["unconfirmed"] is True
    assert spans["send c"].status == "ERROR" and "unconfirmed" not in spans["send c"].attributes
    assert len(sends) == 0


def test_an_expected_error_is_recorded_without_error_status(traced: Any) -> None:
    span = tracer().start_span("task")
    record_error(span, ValueError("declared"), expected="x.expected")
    span.end()
    (record,) = traced.spans()
    assert record.status != "ERROR" and record.attributes["x.expected"] is True
    assert record.attributes[A.ERROR_TYPE] == "ValueError"
    assert record.events[0]["attributes"]["x.expected"] is True


def test_attempts_add_keeps_an_adapter_made_attempt_and_closes_what_it_replaces() -> None:
    closed: list[str] = []

    class Mine(Attempt):
        __slots__ = ("name",)

        def __init__(self, name: str) -> None:
            super().__init__(trace.INVALID_SPAN)
            self.name = name

        def close(self) -> None:
            closed.append(self.name)

    registry: Attempts[str] = Attempts(bound=1)
    first = registry.add("k", Mine("first"))
    assert registry.get("k") is first
    registry.add("k", Mine("again"))  # the stale one is ended (not closed: its context is gone)
    registry.add("other", Mine("other"))  # bounded: "k" evicted
    assert registry.get("k") is None and len(registry) == 1
    assert registry.pop("other") is not None and closed == ["other"]


def test_messaging_system_of_a_connection_or_an_app_is_cached_on_it() -> None:
    transport = types.SimpleNamespace(driver_type="redis")
    connection = types.SimpleNamespace(transport=transport)
    assert messaging_system(connection) == "redis"
    transport.driver_type = "amqp"
    assert messaging_system(connection) == "redis"  # cached
    app = types.SimpleNamespace(conf=types.SimpleNamespace(broker_url="amqps://h//"))
    assert messaging_system(app) == "rabbitmq"
    assert messaging_system(types.SimpleNamespace(conf=types.SimpleNamespace(broker_url=None))) == "rabbitmq"
    assert messaging_system(types.SimpleNamespace()) == "kombu" and messaging_system(None) == "kombu"


def test_delivered_to_falls_back_to_a_default_destination() -> None:
    assert delivered_to({"routing_key": "q"}, "celery") == ("q", "q")
    assert delivered_to({"exchange": "ex"}, "celery") == ("ex", None)
    assert delivered_to(None, "celery") == ("celery", None) and delivered_to(None) == ("", None)
