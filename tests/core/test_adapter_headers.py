"""Trace headers on messages (pipetrace.adapter.headers) and the messaging helpers the kombu and Celery
adapters share (broker URL → messaging.system, cached static attributes, coexistence with an OTel
contrib instrumentor)."""

from __future__ import annotations

import logging
import sys
import types
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.trace import SpanContext, TraceFlags
from pipetrace.adapter import headers as H
from pipetrace.adapter.messaging import PUBLISHED_HEADER, Coexistence, static_attributes, url_system

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
OTHER = "00-11111111111111111111111111111111-2222222222222222-01"
KEYS = ("traceparent", "tracestate", "mine")


def test_stamp_writes_the_span_context_and_the_publish_time() -> None:
    sc = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=False,
                     trace_flags=TraceFlags(TraceFlags.SAMPLED))
    carrier = H.stamp({}, sc, 123)
    assert carrier["traceparent"] == TP and carrier[PUBLISHED_HEADER] == "123"


def test_write_goes_to_the_top_level_and_to_nested_headers() -> None:
    headers: dict[str, Any] = {"headers": {}}
    H.write(headers, {"mine": "v"})
    assert headers["mine"] == "v" and headers["headers"]["mine"] == "v"
    assert H.has({"headers": {"mine": 1}}, "mine") and H.has({"mine": 1}, "mine") and not H.has({}, "mine")


def test_checked_keeps_short_printable_strings_only() -> None:
    assert H.checked("etl", "d") == "etl"
    assert H.checked("", "d") == H.checked(5, "d") == H.checked("a\nb", "d") == H.checked("x" * 201, "d") == "d"


class _Plain:
    headers = None

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


class _Request:
    headers = None

    def __init__(self, request_dict: dict[str, Any]) -> None:
        self.request_dict = request_dict


def test_read_top_level_first_then_nested_from_mappings_and_objects() -> None:
    nested = {"traceparent": TP, "headers": {"traceparent": OTHER, "tracestate": "a=b",
                                             "headers": {"mine": "deep"}}}
    assert H.read(nested, KEYS) == {"traceparent": TP, "tracestate": "a=b", "mine": "deep"}
    assert H.read(_Request(nested), KEYS) == H.read(nested, KEYS)
    assert H.read(_Plain(dict(nested)), KEYS) == H.read(_Plain(dict(nested)), KEYS, (_Plain,)) == H.read(nested, KEYS)
    assert H.read(object(), KEYS) == {} and H.read({"headers": "not a mapping"}, KEYS) == {}


def test_message_fields() -> None:
    msg = types.SimpleNamespace(headers={"id": "h"}, properties={}, delivery_tag=7,
                                delivery_info={"exchange": "ex", "routing_key": None})
    assert H.message_headers(msg) == {"id": "h"} and H.message_id(msg) == "h"
    assert H.message_id(types.SimpleNamespace(properties={"message_id": "p"})) == "p"
    assert H.message_headers(object()) == {}
    assert H.delivered_to(msg.delivery_info) == ("ex", None)
    assert H.delivered_to({"routing_key": "rk", "exchange": "ex"}) == ("rk", "rk")
    assert H.delivered_to(None) == ("", None)


def test_url_system_and_static_attributes() -> None:
    assert url_system("redis+socket:///tmp/r") == "redis" and url_system("amqps://h") == "rabbitmq"
    assert url_system("weird://x") == "weird"
    kombu = static_attributes("rabbitmq", "q", "process", "rk")
    assert kombu["pipetrace.system"] == "kombu" and kombu["messaging.operation.name"] == "process"
    assert kombu["messaging.rabbitmq.destination.routing_key"] == "rk"
    task = static_attributes("redis", "q", "process", None, "celery", "app.t")
    assert task["cicd.pipeline.task.name"] == "app.t" and "messaging.operation.name" not in task
    assert static_attributes("redis", "q", "send", None, "celery", "app.t")["messaging.operation.name"] == "publish"
    with pytest.raises(TypeError):
        task["x"] = 1  # type: ignore[index]


def test_coexistence_replace_switches_the_instrumentor_off_and_defer_stands_aside(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    class FakeInstrumentor:
        _instance: Any = None

        def __init__(self) -> None:
            FakeInstrumentor._instance = self

        def _instrument(self, **_: Any) -> None:
            calls.append("instrument")
            self._is_instrumented_by_opentelemetry = True

        def uninstrument(self) -> None:
            calls.append("uninstrument")
            self._is_instrumented_by_opentelemetry = False

    module = types.ModuleType("fake_otel_instrumentation")
    module.FakeInstrumentor = FakeInstrumentor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    FakeInstrumentor()._instrument()
    co = Coexistence(module.__name__, "FakeInstrumentor", "PT_TEST_COEXIST", logging.getLogger("t"))
    monkeypatch.delenv("PT_TEST_COEXIST", raising=False)
    co.setup()
    assert calls == ["instrument", "uninstrument"] and not co.may_defer and not co.deferring()
    FakeInstrumentor()._instrument()  # skipped while pipetrace replaces it
    assert calls == ["instrument", "uninstrument"] and not co.otel_active()
    co.teardown()
    monkeypatch.setenv("PT_TEST_COEXIST", "defer")
    co.setup()
    assert co.may_defer and not co.deferring()
    FakeInstrumentor()._instrument()
    assert co.otel_active() and co.deferring()


def test_read_skips_a_none_value_for_a_lower_level_and_reads_any_mapping() -> None:
    from types import MappingProxyType

    source = {"traceparent": None, "headers": MappingProxyType({"traceparent": TP, "other": 1})}
    assert H.read(source, KEYS) == {"traceparent": TP}
    assert H.read(source, list(KEYS)) == {"traceparent": TP}  # keys as any sequence


def _read_as_documented(source: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """headers.read's rule, written plainly: the place, then up to two nested ``headers`` levels; the first
    place with a non-None value of a key wins; a place met again is not read again."""
    out: dict[str, Any] = {}
    seen: list[int] = []
    place: Any = source
    for _ in range(3):
        if not isinstance(place, dict) or id(place) in seen:
            break
        seen.append(id(place))
        for key in keys:
            if key not in out and place.get(key) is not None:
                out[key] = place[key]
        place = place.get("headers")
    return out


_NAMES = st.sampled_from(["traceparent", "tracestate", "mine", "other", "task", "id"])
_VALUES = st.one_of(st.none(), st.sampled_from(["a", "b", "", "c=d"]))
_LEVEL = st.dictionaries(_NAMES, _VALUES, max_size=5)


def _nest(levels: list[dict[str, Any]]) -> dict[str, Any]:
    """The first level with each next one as its ``headers``."""
    place: dict[str, Any] = dict(levels[-1])
    for level in reversed(levels[:-1]):
        place = {**level, "headers": place}
    return place


_PLACES = st.lists(_LEVEL, min_size=1, max_size=4).map(_nest)  # (up to a fourth level, which is not read)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(source=_PLACES, padding=st.integers(0, 12))
def test_read_is_the_documented_rule_for_small_and_large_places(source: dict[str, Any], padding: int) -> None:
    """Places with fewer keys than are wanted are read key by key, larger ones by a set operation: the
    same values either way (``padding`` makes the top level large)."""
    source = {**{f"unrelated-{i}": i for i in range(padding)}, **source}
    assert H.read(source, KEYS) == _read_as_documented(source, KEYS)
    assert H.read(source, frozenset(KEYS)) == _read_as_documented(source, KEYS)


def test_read_stops_at_a_place_met_again_and_below_the_third_level() -> None:
    looped: dict[str, Any] = {"traceparent": TP}
    looped["headers"] = looped  # a cycle: read once
    assert H.read(looped, KEYS) == {"traceparent": TP}
    deep = {"headers": {"headers": {"headers": {"mine": "fourth level"}, "tracestate": "a=b"}}}
    assert H.read(deep, KEYS) == {"tracestate": "a=b"}  # a fourth level is not read
    shared = {"traceparent": None, "tracestate": "a=b"}
    request = _Request(shared)
    request.headers = shared  # type: ignore[assignment]  # the same dict in both places: read once
    assert H.read(request, KEYS) == {"tracestate": "a=b"}
