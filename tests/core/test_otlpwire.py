"""pipetrace's OTLP wire encoder parses to the very message the SDK's encoder builds, for every field and
value type; the configured OTLP/HTTP exporter uses it (not a silent fallback) and a receiver gets it."""

from __future__ import annotations

import logging
from typing import Any

import pipetrace
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from otlp_receiver import OTLPReceiver, attrs
from pipetrace.machinery import otlpwire

RES_A = Resource({"service.name": "a", "process.pid": 12, "team": "data"}, "https://schema/a")
RES_B = Resource({"service.name": "b", "list": ("x", "y")})
SCOPE_1 = InstrumentationScope("pipetrace", "1.2", "https://schema/scope", {"k": "v"})
SCOPE_2 = InstrumentationScope("other")


def _ctx(trace_id: int, span_id: int, remote: bool = False, state: TraceState | None = None) -> SpanContext:
    return SpanContext(trace_id, span_id, remote, TraceFlags(TraceFlags.SAMPLED), state)


def _spans() -> list[ReadableSpan]:
    every_type = {"s": "text", "empty": "", "unicode": "héllo ✓", "t": True, "f": False, "i": 7, "neg": -5,
                  "big": 2**62, "min": -(2**63), "x": 1.5, "nx": -0.25, "zero": 0, "fz": 0.0,
                  "strs": ("a", "b"), "ints": [1, 2, 3], "floats": (0.5,), "bools": [True, False], "none_list": [],
                  "bytes": b"\x00\x01", "long": "z" * 300}
    return [
        ReadableSpan(name="task one", context=_ctx(1, 2), parent=_ctx(1, 3, remote=True), resource=RES_A,
                     attributes=every_type, kind=SpanKind.CONSUMER, start_time=10, end_time=20,
                     instrumentation_scope=SCOPE_1, status=Status(StatusCode.ERROR, "boom: it failed"),
                     events=[Event("exception", {"exception.type": "ValueError", "n": 1}, timestamp=15),
                             Event("plain", None, timestamp=16)],
                     links=[Link(_ctx(9, 8, remote=True), {"pipetrace.link.kind": "result"}), Link(_ctx(9, 7))]),
        ReadableSpan(name="query", context=_ctx(2**127 + 5, 2**63 + 1, state=TraceState([("vendor", "x1")])),
                     parent=_ctx(2**127 + 5, 4), resource=RES_A, attributes={"rows": 3}, kind=SpanKind.INTERNAL,
                     start_time=11, end_time=12, instrumentation_scope=SCOPE_2, status=Status(StatusCode.OK)),
        ReadableSpan(name="run etl", context=_ctx(3, 4), parent=None, resource=RES_B, attributes={},
                     kind=SpanKind.SERVER, start_time=1, end_time=30, instrumentation_scope=SCOPE_1),
        ReadableSpan(name="", context=_ctx(3, 5), parent=None, resource=RES_B, attributes=None,
                     kind=SpanKind.PRODUCER, start_time=1, end_time=2, instrumentation_scope=None),
        ReadableSpan(name="send q", context=_ctx(1, 6), parent=_ctx(1, 2), resource=RES_A,
                     attributes={"messaging.system": "redis", "i": 7}, kind=SpanKind.CLIENT, start_time=10,
                     end_time=11, instrumentation_scope=SCOPE_1),
    ]


def _parsed(data: bytes) -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    message.ParseFromString(data)
    return message


def test_the_bytes_parse_to_the_message_the_sdk_builds() -> None:
    spans = _spans()
    ours, sdk = _parsed(otlpwire.encode_request(spans)), encode_spans(spans)
    assert ours == sdk
    assert [len(r.scope_spans) for r in ours.resource_spans] == [2, 2]  # grouped by resource, then scope


def test_repeated_batches_from_the_caches_are_the_same_bytes() -> None:
    spans = _spans()
    first = otlpwire.encode_request(spans)
    assert otlpwire.encode_request(spans) == first  # key, pair, resource and scope caches hit now
    assert _parsed(otlpwire.encode_request(spans[1:2])) == encode_spans(spans[1:2])


def test_a_value_that_cannot_be_encoded_is_left_out_as_the_sdk_does(caplog: pytest.LogCaptureFixture) -> None:
    span = ReadableSpan(name="x", context=_ctx(1, 2), resource=RES_A, attributes={"ok": 1, "huge": 2**70, "b": "c"},
                        start_time=1, end_time=2)
    with caplog.at_level(logging.ERROR):  # the SDK logs its own failure
        sdk = encode_spans([span])
    ours = _parsed(otlpwire.encode_request([span]))
    assert ours == sdk
    assert [kv.key for kv in ours.resource_spans[0].scope_spans[0].spans[0].attributes] == ["ok", "b"]


def test_the_configured_exporter_sends_wire_bytes_to_a_receiver(traced, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipetrace.config import load
    from pipetrace.processing.export import otlp_exporter

    calls: list[int] = []
    encode = otlpwire.encode_request
    monkeypatch.setattr(otlpwire, "encode_request", lambda spans: calls.append(len(spans)) or encode(spans))
    with OTLPReceiver() as receiver:
        exporter = otlp_exporter(load(env={}, otlp_endpoint=receiver.endpoint))
        assert type(exporter).__name__ == "WireOTLPSpanExporter"
        # SDKs before the HTTP client object (1.44, the oldest accepted) keep their own encoder: the
        # exporter falls back to it, and the span arrives all the same
        wire = hasattr(exporter, "_client")
        pipetrace.configure(home=traced.home, exporters="otlp", otlp_endpoint=receiver.endpoint,
                            export_interval_s=0.05)
        with pipetrace.task_span("python", "etl", "wire-1", "extract", attributes={"rows": 3, "ok": True}):
            pass
        assert pipetrace.force_flush(10)
        got = receiver.wait_for(1)
    if wire:
        assert calls and sum(calls) == 1  # our encoder made the request, not the SDK's fallback
    else:
        assert not calls
    (resource, span), = got
    assert span.name == "task extract" and attrs(span.attributes)["rows"] == 3 and attrs(span.attributes)["ok"] is True
    assert attrs(resource.attributes)["service.name"]


def test_distinct_values_of_a_key_skip_the_pair_cache_and_encode_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids (a task id per span) never repeat: after DISTINCT_AFTER misses their key stops filling the pair
    cache (which would be cleared by them, repeated pairs with it), and the bytes are unchanged."""
    monkeypatch.setattr(otlpwire, "_pairs", {})
    monkeypatch.setattr(otlpwire, "_distinct", {})
    spans = [ReadableSpan(name="task t", context=_ctx(1, 10 + i), resource=RES_A, kind=SpanKind.CONSUMER,
                          attributes={"messaging.system": "redis", "cicd.pipeline.task.run.id": f"id-{i:04d}", "n": i},
                          start_time=1, end_time=2, instrumentation_scope=SCOPE_1)
             for i in range(3 * otlpwire.DISTINCT_AFTER)]
    assert _parsed(otlpwire.encode_request(spans)) == encode_spans(spans)
    cached = [pair[1] for pair in otlpwire._pairs]
    assert cached.count("cicd.pipeline.task.run.id") == otlpwire.DISTINCT_AFTER  # then no more
    assert cached.count("n") == otlpwire.DISTINCT_AFTER
    assert cached.count("messaging.system") == 1  # the repeated pair: encoded once, still cached


def test_unset_status_and_remote_parent_flags_match_the_sdk() -> None:
    spans = [ReadableSpan(name="a", context=_ctx(1, 2), parent=_ctx(1, 3, remote=remote), resource=RES_A,
                          status=status, start_time=1, end_time=2, instrumentation_scope=SCOPE_1)
             for remote in (True, False) for status in (Status(StatusCode.UNSET), Status(StatusCode.OK),
                                                        Status(StatusCode.ERROR), Status(StatusCode.ERROR, "why"))]
    assert _parsed(otlpwire.encode_request(spans)) == encode_spans(spans)


def test_keys_judged_distinct_are_judged_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key with many values that repeat (the task names of a large app) goes back to the pair cache."""
    monkeypatch.setattr(otlpwire, "_pairs", {})
    monkeypatch.setattr(otlpwire, "_distinct", {})
    monkeypatch.setattr(otlpwire, "_direct", [0])
    monkeypatch.setattr(otlpwire, "RECHECK_AFTER", 10)
    names = [{"cicd.pipeline.task.name": f"app.task_{i}"} for i in range(otlpwire.DISTINCT_AFTER + 1)]
    for one in names + names[:10]:  # every name once, then 10 direct encodings
        otlpwire.attributes(b"\x4a", one)
    assert otlpwire._distinct == {}  # judged again from here
    otlpwire.attributes(b"\x4a", names[0])
    assert otlpwire._distinct == {}  # a hit: the cached pair, no miss counted


def test_a_str_enum_value_encodes_as_its_text_from_the_pair_cache_too() -> None:
    import enum

    class State(str, enum.Enum):  # Prefect's StateType shape, on every state event
        RUNNING = "RUNNING"

    span = ReadableSpan(name="task t", context=_ctx(1, 2), resource=RES_A, attributes={"state": State.RUNNING},
                        kind=SpanKind.INTERNAL, start_time=1, end_time=2, instrumentation_scope=SCOPE_1,
                        events=[Event("Running", {"prefect.state.type": State.RUNNING}, timestamp=1)])
    for _ in range(2):  # the second time from the pair cache
        ours = _parsed(otlpwire.encode_request([span]))
        assert ours == encode_spans([span])
        assert ours.resource_spans[0].scope_spans[0].spans[0].attributes[0].value.string_value == "RUNNING"


def _sdk_has_transports() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("opentelemetry.exporter.http.transport._urllib3") is not None
    except ModuleNotFoundError:  # (the parent package is missing too)
        return False


def test_a_plain_http_endpoint_is_sent_through_the_sdks_urllib3_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests re-reads the proxy variables and ~/.netrc on every POST (~0.6 ms of the export thread):
    where neither can apply, the SDK's own urllib3 transport sends the batch; everywhere else the SDK's
    requests session stays (proxies, netrc, TLS with its CA bundle, a credential provider's session)."""
    if not _sdk_has_transports():  # an SDK before 1.45: no transports, its requests session stays
        assert otlpwire.light_transport("http://127.0.0.1:4318/v1/traces") is None
        assert not otlpwire._takes_transport(otlpwire.http_exporter_class().__mro__[1])
        return
    from opentelemetry.exporter.http.transport._requests import RequestsHTTPTransport
    from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport

    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy",
                *otlpwire.CREDENTIAL_PROVIDER_VARS):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent/netrc")
    cls = otlpwire.http_exporter_class()

    def transport(endpoint: str) -> object:
        return cls(endpoint=endpoint)._client._transport

    assert isinstance(transport("http://127.0.0.1:4318/v1/traces"), Urllib3HTTPTransport)
    assert isinstance(transport("https://collector:4318/v1/traces"), RequestsHTTPTransport)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy:3128")
    assert isinstance(transport("http://collector:4318/v1/traces"), RequestsHTTPTransport)
    monkeypatch.setenv("NO_PROXY", "collector")
    assert isinstance(transport("http://collector:4318/v1/traces"), Urllib3HTTPTransport)
    monkeypatch.delenv("HTTP_PROXY")
    monkeypatch.setenv(otlpwire.CREDENTIAL_PROVIDER_VARS[0], "some.module:session")
    assert otlpwire.light_transport("http://collector:4318/v1/traces") is None


def test_a_netrc_entry_for_the_endpoint_keeps_the_session(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine collector login user password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    assert otlpwire.light_transport("http://collector:4318/v1/traces") is None
    assert (otlpwire.light_transport("http://other:4318/v1/traces") is not None) == _sdk_has_transports()


def test_distinct_long_and_non_ascii_values_encode_as_the_sdk_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """The direct path of a key judged distinct writes the pair in one join: lengths past one varint byte
    (a 200-character value, a long key) and multi-byte UTF-8 come out as the SDK's bytes."""
    monkeypatch.setattr(otlpwire, "_pairs", {})
    monkeypatch.setattr(otlpwire, "_distinct", {})
    long_key = "k" * 130
    spans = [ReadableSpan(name="task t", context=_ctx(1, 10 + i), resource=RES_A,
                          attributes={"id": f"{i:04d}" + "x" * (i % 3) * 100, long_key: f"v{i}", "ü": f"é{i}" * 70},
                          start_time=1, end_time=2, instrumentation_scope=SCOPE_1)
             for i in range(3 * otlpwire.DISTINCT_AFTER)]
    assert _parsed(otlpwire.encode_request(spans)) == encode_spans(spans)
    assert otlpwire._distinct["id"] > otlpwire.DISTINCT_AFTER  # the direct path was taken


def test_real_sdk_spans_encode_from_the_dicts_under_their_attributes() -> None:
    """Spans the SDK made hold ``BoundedAttributes`` (behind a read-only proxy): the encoder reads the plain
    dicts under them (a Python walk of the mapping per span is the slow part) and writes the SDK's bytes,
    events and links included; a span that dropped attributes still says how many."""
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider
    from pipetrace.machinery.sdk import plain_attributes, span_attributes

    tracer = TracerProvider(resource=RES_A, span_limits=SpanLimits(max_span_attributes=4)).get_tracer("lib")
    spans = []
    for i in range(3):
        span = tracer.start_span(f"task {i}", attributes={"a": i, "b": "x", "c": (1, 2)},
                                 links=[Link(_ctx(9, 9), {"link.kind": "xcom"})])
        span.add_event("state", {"state": "RUNNING"})
        if i == 2:
            span.set_attributes({"d": 1, "e": 2})  # one past the limit of 4: dropped, and counted
        span.end()
        spans.append(span)
    assert type(span_attributes(spans[0])) is dict and span_attributes(spans[0]) == dict(spans[0].attributes)
    assert type(plain_attributes(spans[0].events[0].attributes)) is dict
    assert plain_attributes(None) == {} and plain_attributes({"k": 1}) == {"k": 1}
    assert spans[2].dropped_attributes == 1
    assert _parsed(otlpwire.encode_request(spans)) == encode_spans(spans)


def test_tuples_and_lists_skip_the_abc_checks_and_encode_as_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefect's tags (a tuple, most often empty) are on every task span: a plain tuple or list is encoded
    without ``isinstance`` against the ``Sequence`` ABC (~0.8 µs a value), to the SDK's bytes; a subclass
    still takes the general path."""
    import collections

    checked: list[Any] = []

    class Watched(type):
        def __instancecheck__(cls, obj: Any) -> bool:
            checked.append(obj)
            return isinstance(obj, (list, tuple))

    monkeypatch.setattr(otlpwire, "Sequence", Watched("Sequence", (), {}))
    Pair = collections.namedtuple("Pair", "a b")
    values = {"tags": (), "names": ("a", "b"), "ints": [1, 2], "mixed_bools": (True, False), "floats": [0.5]}
    span = ReadableSpan(name="task t", context=_ctx(1, 2), resource=RES_A, attributes=values, kind=SpanKind.INTERNAL,
                        start_time=1, end_time=2, instrumentation_scope=SCOPE_1)
    assert _parsed(otlpwire.encode_request([span])) == encode_spans([span])
    assert checked == []
    assert otlpwire.any_value(()) == b"\x2a\x00"
    assert otlpwire.any_value(Pair("x", "y")) == otlpwire.any_value(("x", "y"))
    assert len(checked) == 1  # the named tuple: the general path


def test_distinct_ids_of_any_size_encode_as_the_sdk_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key judged distinct writes its values after a prefix cached by (tag, key, size): sizes around the
    one- and two-byte length varints, empty and multi-byte text, each size seen twice."""
    monkeypatch.setattr(otlpwire, "_pairs", {})
    monkeypatch.setattr(otlpwire, "_distinct", {})
    monkeypatch.setattr(otlpwire, "_prefixes", {})
    monkeypatch.setattr(otlpwire, "DISTINCT_AFTER", 2)
    values = [f"{n}-" + "é" * ((size - 3) // 2) + "x" * ((size - 3) % 2 + 1) if size > 3 else "x" * size
              for size in (0, 1, 5, 60, 61, 62, 63, 64, 100, 120, 121, 122, 125, 126, 127, 128, 129, 200, 256)
              for n in (1, 2)]
    spans = [ReadableSpan(name="t", context=_ctx(1, 10 + i), resource=RES_A, kind=SpanKind.INTERNAL,
                          attributes={"cicd.pipeline.run.id": value, "k": "v"}, start_time=1, end_time=2,
                          instrumentation_scope=SCOPE_1) for i, value in enumerate(values)]
    assert _parsed(otlpwire.encode_request(spans)) == encode_spans(spans)
    assert otlpwire._prefixes  # the ids went the direct way


def test_span_fields_are_read_directly_only_where_the_probe_allows() -> None:
    """``ReadableSpan`` and the SDK's ``Span`` are read by their fields (the probe must keep finding them so:
    this fails if it switches the shortcut off); a subclass that overrides a property is read through it."""
    from opentelemetry.sdk.trace import Span

    assert {ReadableSpan, Span} <= otlpwire._DIRECT

    class Renamed(ReadableSpan):
        @property
        def name(self) -> str:
            return "renamed"

    span = Renamed(name="t", context=_ctx(1, 2), parent=_ctx(1, 3, remote=True), resource=RES_A,
                   kind=SpanKind.PRODUCER, attributes={"a": "b"}, start_time=1, end_time=2,
                   instrumentation_scope=SCOPE_1, events=[Event("e", {"k": 1}, timestamp=1)])
    ours = _parsed(otlpwire.encode_request([span]))
    assert ours == encode_spans([span])
    assert ours.resource_spans[0].scope_spans[0].spans[0].name == "renamed"


def test_plain_dict_and_bounded_attributes_encode_as_the_sdk_does() -> None:
    """A deferred span's record holds a plain dict (read directly: nothing dropped); one holding the SDK's
    ``BoundedAttributes`` goes through the properties, its drop count included."""
    from opentelemetry.attributes import BoundedAttributes

    bounded = BoundedAttributes(2, {"a": "x", "b": 1, "c": True}, immutable=False)
    assert bounded.dropped == 1
    spans = [ReadableSpan(name=f"s{i}", context=_ctx(1, 2 + i), resource=RES_A, attributes=attributes,
                          start_time=1, end_time=2, instrumentation_scope=SCOPE_1)
             for i, attributes in enumerate(({"a": "x", "b": 1, "c": True}, bounded, {}, None))]
    assert _parsed(otlpwire.encode_request(spans)) == encode_spans(spans)
    assert otlpwire._DIRECT  # the direct reads are on in this SDK: the dict path was taken
