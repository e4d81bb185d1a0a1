"""The lean span path (pipetrace.machinery.fastspan) and deferred spans (pipetrace.machinery.deferred) give exactly the
span the SDK's own ``Tracer.start_span`` gives: same ids, parent, attributes, limits, sampling."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider, sampling
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags, TraceState
from pipetrace.machinery import handle as deferred
from pipetrace.machinery import record as fastspan
from pipetrace.machinery.ids import DerivedIdGenerator
from pipetrace.sampling.head import RunConsistentSampler
from pipetrace.sampling.rates import PipelineRates

REMOTE = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True,
                     trace_flags=TraceFlags(TraceFlags.SAMPLED), trace_state=TraceState([("ot", "th:8")]))
UNSAMPLED = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))


def _ctx(sc: SpanContext) -> Context:
    return trace.set_span_in_context(NonRecordingSpan(sc), Context())


CASES: list[dict[str, Any]] = [
    {"name": "root with derived trace id", "context": Context(), "trace_id": 0xABC, "span_id": 0xDEF,
     "attributes": {"a": "x", "n": 3, "f": 1.5, "b": True}},
    {"name": "child of a remote sampled parent", "context": _ctx(REMOTE), "span_id": 0x77,
     "attributes": {"cicd.pipeline.name": "etl"}, "kind": SpanKind.CONSUMER, "start_time": 1_700_000_000_000_000_000},
    {"name": "child of an unsampled parent", "context": _ctx(UNSAMPLED), "span_id": 0x78, "attributes": {"a": "b"}},
    {"name": "values that need cleaning", "context": Context(), "trace_id": 0x99, "span_id": 0x98,
     "attributes": {"list": [1, 2, 3], "none": None, "tuple": ("a", "b"), "obj": object(), "": "empty key"}},
    {"name": "links", "context": _ctx(REMOTE), "span_id": 0x55, "attributes": {"a": "b"},
     "links": [Link(UNSAMPLED, {"pipetrace.link.kind": "result"})]},
    {"name": "random ids", "context": Context(), "attributes": {"a": "b"}},
]


def _provider(sampler: sampling.Sampler | None = None, limits: SpanLimits | None = None,
              processor: SpanProcessor | None = None) -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider(id_generator=DerivedIdGenerator(), sampler=sampler or sampling.ParentBased(
        sampling.ALWAYS_ON), span_limits=limits or SpanLimits(), shutdown_on_exit=False)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(processor or SimpleSpanProcessor(exporter))
    return provider, exporter


def _shape(span: ReadableSpan, start: bool = True) -> dict[str, Any]:
    shape = {
        "name": span.name, "context": span.context, "parent": span.parent, "kind": span.kind,
        "attributes": dict(span.attributes or {}), "dropped_attributes": span.dropped_attributes,
        "links": [(lk.context, dict(lk.attributes or {})) for lk in span.links], "start": span.start_time,
        "status": span.status.status_code, "resource": dict(span.resource.attributes),
        "scope": span.instrumentation_scope, "events": [(e.name, dict(e.attributes or {})) for e in span.events],
    }
    if not start:  # the clock's "now": differs between two calls
        shape.pop("start")
    return shape


@pytest.fixture(autouse=True)
def _lean_on_after() -> Iterator[None]:
    yield
    fastspan.enable_lean()


def _both(case: dict[str, Any], **provider_kw: Any) -> tuple[list[ReadableSpan], list[ReadableSpan]]:
    """The spans from the lean path and from the SDK's public path, for the same call."""
    out = []
    for lean in (True, False):
        if lean:
            fastspan.enable_lean()
        else:
            fastspan.disable_lean()
        provider, exporter = _provider(**provider_kw)
        tracer = provider.get_tracer("pipetrace")
        args = {k: v for k, v in case.items() if k != "name"}
        span = fastspan.start_span(tracer, case["name"], **args)
        span.end(end_time=(args.get("start_time") or 0) + 10**9 if args.get("start_time") else None)
        out.append(list(exporter.get_finished_spans()))
    return out[0], out[1]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_lean_span_equals_the_sdk_span(case: dict[str, Any]) -> None:
    lean, public = _both(case)
    assert len(lean) == len(public)
    for a, b in zip(lean, public, strict=True):
        sa, sb = _shape(a, "start_time" in case), _shape(b, "start_time" in case)
        if "trace_id" not in case and "span_id" not in case:  # random ids: everything else equal
            for s in (sa, sb):
                s.pop("context")
        assert sa == sb


def test_lean_span_honours_the_span_limits() -> None:
    case = {"name": "limited", "context": Context(), "trace_id": 5, "span_id": 6,
            "attributes": {f"k{i}": "long value" for i in range(6)}}
    lean, public = _both(case, limits=SpanLimits(max_span_attributes=3, max_span_attribute_length=4))
    assert _shape(lean[0], False) == _shape(public[0], False)
    assert dict(lean[0].attributes) == {"k3": "long", "k4": "long", "k5": "long"}
    assert lean[0].dropped_attributes == 3


LINK_ATTRS = [{"pipetrace.link.kind": "result", "dagster.input": "value", "n": 3, "f": 0.5, "b": False},
              {"kind": "long value", "list": [1, 2], "": "empty key"}, {}]


@pytest.mark.parametrize("limits", [SpanLimits(), SpanLimits(max_link_attributes=2, max_attribute_length=4),
                                    SpanLimits(max_links=2)], ids=["default", "attribute limits", "link limit"])
def test_lean_add_link_equals_the_sdks(limits: SpanLimits) -> None:
    """record.add_link gives the links (attributes, drop counts, immutability) the SDK's add_link gives."""
    links = []
    for lean in (True, False):
        fastspan.enable_lean() if lean else fastspan.disable_lean()
        provider, exporter = _provider(limits=limits)
        span = fastspan.start_span(provider.get_tracer("pipetrace"), "step", context=Context(), trace_id=5, span_id=6)
        for i, attrs in enumerate(LINK_ATTRS):
            fastspan.add_link(span, SpanContext(7, 8 + i, True), attrs) if lean else span.add_link(
                SpanContext(7, 8 + i, True), attrs)
        fastspan.add_link(span, SpanContext(0, 0, False), {"x": "y"})  # an invalid context: as the SDK decides
        span.end()
        (done,) = exporter.get_finished_spans()
        links.append(([(lk.context, dict(lk.attributes or {}), lk.dropped_attributes) for lk in done.links],
                      done.dropped_links))
        with pytest.raises(TypeError):
            done.links[0].attributes["new"] = 1  # type: ignore[index]
    assert links[0] == links[1]
    fastspan.add_link(NonRecordingSpan(REMOTE), REMOTE, {"a": "b"})  # not an SDK span: its own add_link


def test_lean_add_link_falls_back_to_the_sdks_when_its_internals_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    provider, exporter = _provider()
    span = fastspan.start_span(provider.get_tracer("pipetrace"), "step", context=Context(), trace_id=5, span_id=6)
    monkeypatch.setattr(fastspan, "BoundedAttributes", _raises)
    fastspan.add_link(span, REMOTE, {"a": "b"})
    span.end()
    assert [(lk.context, dict(lk.attributes or {})) for lk in exporter.get_finished_spans()[0].links] == [
        (REMOTE, {"a": "b"})]


def _raises(*args: Any, **kwargs: Any) -> None:
    raise TypeError("another SDK")


def _links() -> list[Link]:
    """Fresh links each time: the SDK keeps each link's bounded attributes on the link object itself."""
    return [Link(REMOTE, {"pipetrace.link.kind": "xcom", "airflow.xcom.key": "k", "airflow.xcom.map_index": 3}),
            Link(UNSAMPLED, {"list": [1, 2], "none": None, "": "x", "long": "abcdefgh", "ok": True}),
            Link(SpanContext(0, 0, False), None),  # invalid and bare: the SDK drops it
            Link(UNSAMPLED, None)]


@pytest.mark.parametrize("limits", [SpanLimits(), SpanLimits(max_link_attributes=2),
                                    SpanLimits(max_link_attributes=2, max_attribute_length=4, max_links=2)])
def test_lean_links_equal_the_sdks(limits: SpanLimits) -> None:
    """Link attributes put in without the SDK's per-value cleaning (plain values) keep what the SDK's
    ``_new_links`` gives: values cleaned, limits applied, drop counts, invalid links dropped, immutable."""
    out = []
    for lean in (True, False):
        fastspan.enable_lean() if lean else fastspan.disable_lean()
        provider, exporter = _provider(limits=limits)
        fastspan.start_span(provider.get_tracer("pipetrace"), "links", context=_ctx(REMOTE), span_id=0x66,
                            links=_links()).end()
        out.append(exporter.get_finished_spans()[0])
    lean_span, public = out
    assert _shape(lean_span, False) == _shape(public, False)
    assert [lk.dropped_attributes for lk in lean_span.links] == [lk.dropped_attributes for lk in public.links]
    assert len(lean_span.links) == len(public.links) == (2 if limits.max_links == 2 else 3)
    with pytest.raises(TypeError):
        lean_span.links[0].attributes["new"] = 1  # type: ignore[index]


def test_lean_span_passes_the_samplers_attributes_and_decision() -> None:
    sampler = RunConsistentSampler(PipelineRates({}, default_rate=0.5))
    kept_lean = kept_public = 0
    for lean in (True, False):
        fastspan.enable_lean() if lean else fastspan.disable_lean()
        provider, exporter = _provider(sampler=sampler)
        tracer = provider.get_tracer("pipetrace")
        for i in range(200):
            fastspan.start_span(tracer, "run", context=Context(), trace_id=(i * 0x9E3779B97F4A7C15) % 2**128 or 1,
                                span_id=i + 1, attributes={"cicd.pipeline.name": "etl"}).end()
        spans = exporter.get_finished_spans()
        if lean:
            kept_lean, lean_spans = len(spans), spans
        else:
            kept_public, public_spans = len(spans), spans
    assert 0 < kept_lean < 200 and kept_lean == kept_public
    assert [_shape(s, False) for s in lean_spans] == [_shape(s, False) for s in public_spans]
    assert all("pipetrace.sampling.rate" in s.attributes or len(s.attributes) == 1 for s in lean_spans)


def test_lean_path_switches_itself_off_when_the_sdk_differs(monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise TypeError("an SDK with another _Span")

    assert fastspan.lean_enabled()  # the SDK passed the check; then it fails at run time
    monkeypatch.setattr(fastspan, "_Span", broken)
    provider, exporter = _provider()
    with caplog.at_level(logging.WARNING, logger="pipetrace.spans"):
        span = fastspan.start_span(provider.get_tracer("t"), "still traced", context=Context(), trace_id=7, span_id=8)
    span.end()
    (done,) = exporter.get_finished_spans()
    assert done.context.trace_id == 7 and done.context.span_id == 8  # ids forced through the public path
    assert not fastspan.usable(provider.get_tracer("t"))
    assert "lean span path switched off" in caplog.text


def test_lean_path_is_off_for_an_sdk_without_the_expected_span_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastspan, "_Span", lambda name: None)  # another constructor signature
    fastspan.enable_lean()
    assert not fastspan.lean_enabled()
    provider, exporter = _provider()
    fastspan.start_span(provider.get_tracer("t"), "public path", context=Context(), span_id=9).end()
    (done,) = exporter.get_finished_spans()
    assert done.context.span_id == 9


# --- deferred spans ----------------------------------------------------------------------------------


class _WatchesRunningSpans(SpanProcessor):
    def __init__(self) -> None:
        self.started: list[str] = []

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        self.started.append(span.name)
        span.set_attribute("seen.at.start", True)


def _deferred_and_live(processor: SpanProcessor | None = None) -> tuple[ReadableSpan, ReadableSpan]:
    spans = []
    for make in ("deferred", "live"):
        provider, exporter = _provider(processor=processor)
        if processor is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("pipetrace")
        attrs = {"messaging.system": "redis", "messaging.destination.name": "q", "n": 1}
        if make == "deferred":
            span = deferred.begin_span(tracer, "send q", kind=SpanKind.PRODUCER, attributes=attrs, context=_ctx(REMOTE),
                                  span_id=0x42, start_time=1_000)
            span.set_attribute("late", "yes")
            span.end(end_time=2_000)
        else:
            live = fastspan.start_span(tracer, "send q", kind=SpanKind.PRODUCER, attributes=attrs,
                                       context=_ctx(REMOTE), span_id=0x42, start_time=1_000)
            live.set_attribute("late", "yes")
            live.end(end_time=2_000)
        finished = exporter.get_finished_spans()
        spans.append(finished[-1])
    return spans[0], spans[1]


def test_deferred_span_is_the_span_the_sdk_would_make() -> None:
    got, want = _deferred_and_live()
    assert _shape(got) == _shape(want)
    assert got.end_time == want.end_time == 2_000
    assert got.context.span_id == 0x42 and got.parent == REMOTE


def test_deferred_span_uses_the_sdk_span_when_a_processor_watches_running_spans() -> None:
    watcher = _WatchesRunningSpans()
    got, want = _deferred_and_live(processor=watcher)
    assert watcher.started == ["send q", "send q"]  # on_start ran for the deferred span too
    assert got.attributes["seen.at.start"] is True
    assert _shape(got) == _shape(want)


def test_deferred_span_records_an_exception_on_the_live_span() -> None:
    provider, exporter = _provider()
    span = deferred.begin_span(provider.get_tracer("t"), "send q", kind=SpanKind.PRODUCER, attributes={"a": "b"},
                          context=Context())
    live = span.live()
    live.record_exception(ConnectionError("broker down"))
    live.set_status(StatusCode.ERROR)
    live.end()
    span.end()  # a second end is a no-op
    (done,) = exporter.get_finished_spans()
    assert done.status.status_code is StatusCode.ERROR
    assert [e.name for e in done.events] == ["exception"]
    assert done.start_time == span.start_time


def test_unsampled_deferred_span_records_nothing_and_still_has_a_context() -> None:
    provider, exporter = _provider(sampler=sampling.ALWAYS_OFF)
    span = deferred.begin_span(provider.get_tracer("t"), "send q", attributes={"a": "b"}, context=Context())
    assert span.get_span_context().is_valid and not span.get_span_context().trace_flags.sampled
    assert not span.is_recording()
    span.end()
    assert exporter.get_finished_spans() == ()


def test_emits_directly_follows_the_processors_of_the_provider() -> None:
    provider, _ = _provider()
    tracer = provider.get_tracer("t")
    assert deferred.emits_directly(tracer)
    provider.add_span_processor(_WatchesRunningSpans())
    assert not deferred.emits_directly(tracer)


def _deferred_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    return _provider()


def test_deferred_span_as_the_current_span_parents_user_spans_and_keeps_attributes_and_events() -> None:
    provider, exporter = _deferred_provider()
    tracer = provider.get_tracer("pipetrace")
    span = deferred.begin_span(tracer, "task load", kind=SpanKind.CONSUMER, attributes={"a": 1}, context=_ctx(REMOTE),
                          span_id=0x99)
    assert isinstance(span, deferred.DeferredSpan)  # no processor watches running spans: deferred
    with trace.use_span(span, end_on_exit=False):
        current = trace.get_current_span()
        assert current is span and current.is_recording()
        current.set_attribute("rows", 10)
        current.add_event("celery.retry", {"reason": "flaky"}, timestamp=5)
        current.update_name("task load_v2")
        with tracer.start_as_current_span("user work") as user:
            assert user.parent.span_id == 0x99
        assert span.attributes["rows"] == 10 and span.attributes["a"] == 1
    span.end()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    task = spans["task load_v2"]
    assert task.context.span_id == 0x99 and task.parent == REMOTE and task.kind is SpanKind.CONSUMER
    assert dict(task.attributes) == {"a": 1, "rows": 10}
    assert [(e.name, dict(e.attributes), e.timestamp) for e in task.events] == [("celery.retry", {"reason": "flaky"},
                                                                               5)]
    assert spans["user work"].parent.span_id == 0x99
    assert not span.is_recording()


def test_deferred_span_becomes_the_sdk_span_for_an_exception_and_keeps_what_came_before() -> None:
    provider, exporter = _deferred_provider()
    span = deferred.begin_span(provider.get_tracer("t"), "task boom", attributes={"a": "b"}, context=Context(),
                          span_id=0x5)
    span.set_attribute("before", True)
    span.add_event("first", {"k": "v"})
    span.set_attribute("list", ["x", "y"])  # needs cleaning: handled by the SDK at the end
    span.record_exception(ValueError("bad"), attributes={"pipetrace.celery.expected_error": True})
    span.set_status(StatusCode.ERROR, "bad")
    span.set_attribute("after", 1)
    span.end()
    (done,) = exporter.get_finished_spans()
    assert done.context.span_id == 0x5 and done.start_time == span.start_time
    assert done.attributes["before"] is True and done.attributes["after"] == 1
    assert done.attributes["list"] == ("x", "y")
    assert [e.name for e in done.events] == ["first", "exception"]
    assert done.status.status_code is StatusCode.ERROR


def test_deferred_span_context_manager_records_an_escaping_exception() -> None:
    provider, exporter = _deferred_provider()
    span = deferred.begin_span(provider.get_tracer("t"), "process q", attributes={"a": "b"}, context=Context())
    with pytest.raises(KeyError):
        with span:
            raise KeyError("missing")
    (done,) = exporter.get_finished_spans()
    assert done.status.status_code is StatusCode.ERROR
    assert [e.name for e in done.events] == ["exception"]


def test_deferred_span_with_a_list_attribute_matches_the_sdk() -> None:
    provider, exporter = _deferred_provider()
    tracer = provider.get_tracer("t")
    span = deferred.begin_span(tracer, "x", attributes={"a": "b"}, context=Context(), span_id=0x7, trace_id=0x8,
                          start_time=100)
    span.set_attribute("tags", ["p", "q"])
    span.end(end_time=200)
    live = fastspan.start_span(tracer, "x", attributes={"a": "b"}, context=Context(), span_id=0x7, trace_id=0x8,
                               start_time=100)
    live.set_attribute("tags", ["p", "q"])
    live.end(end_time=200)
    got, want = exporter.get_finished_spans()
    assert _shape(got) == _shape(want)


LOCAL = SpanContext(0xFEED, 0xBEEF, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED),
                    trace_state=TraceState([("vendor", "v1")]))
LOCAL_UNSAMPLED = SpanContext(0xFEED, 0xBEE0, is_remote=False, trace_flags=TraceFlags(TraceFlags.DEFAULT))
STATIC_SAMPLERS = [
    sampling.ALWAYS_ON, sampling.ALWAYS_OFF, sampling.ParentBased(sampling.ALWAYS_ON),
    sampling.ParentBased(sampling.ALWAYS_OFF),
    sampling.ParentBased(sampling.ALWAYS_OFF, remote_parent_sampled=sampling.ALWAYS_OFF,
                         remote_parent_not_sampled=sampling.ALWAYS_ON, local_parent_sampled=sampling.ALWAYS_OFF,
                         local_parent_not_sampled=sampling.ALWAYS_ON),
]


@pytest.mark.parametrize("sampler", STATIC_SAMPLERS, ids=lambda s: s.get_description())
@pytest.mark.parametrize("parent", [None, REMOTE, UNSAMPLED, LOCAL, LOCAL_UNSAMPLED],
                         ids=["root", "remote", "remote-unsampled", "local", "local-unsampled"])
def test_static_samplers_are_decided_without_the_call_exactly_as_they_decide(sampler: sampling.Sampler,
                                                                           parent: SpanContext | None) -> None:
    table = fastspan._static_table(sampler)
    assert table is not None
    context = Context() if parent is None else _ctx(parent)
    attrs = {"a": "b"}
    want = sampler.should_sample(context, 0xABC, "s", SpanKind.INTERNAL, attrs, ())
    decision, sampled, recording = table[0] if parent is None else fastspan._static_entry(
        table, parent.is_remote, parent.trace_flags)
    assert decision is want.decision
    assert (sampled, recording) == (want.decision.is_sampled(), want.decision.is_recording())
    provider, exporter = _provider(sampler=sampler)
    decided = fastspan.decide(provider.get_tracer("t"), "s", context, SpanKind.INTERNAL, attrs, (), 0xABC, 0x1)
    if want.decision.is_recording():
        assert isinstance(decided, fastspan.Decision)
        assert dict(decided.attributes or {}) == dict(want.attributes)
        assert decided.context.trace_state == (want.trace_state or TraceState())
        assert decided.context.trace_flags.sampled == want.decision.is_sampled()
    else:
        assert isinstance(decided, NonRecordingSpan)


def test_other_samplers_are_still_asked() -> None:
    ratio = sampling.ParentBased(sampling.TraceIdRatioBased(0.5))
    assert fastspan._static_table(ratio) is None
    assert fastspan._static_table(RunConsistentSampler(PipelineRates({}, default_rate=0.5))) is None
    asked: list[str] = []

    class Counting(sampling.Sampler):
        def should_sample(self, parent_context: Any, trace_id: int, name: str, *args: Any, **kwargs: Any
                          ) -> sampling.SamplingResult:
            asked.append(name)
            parent = trace.get_current_span(parent_context).get_span_context()
            assert parent == REMOTE  # a sampler asked for a span begun from a span context gets its Context
            return sampling.SamplingResult(sampling.Decision.RECORD_AND_SAMPLE, {"by": "counting"})

        def get_description(self) -> str:
            return "counting"

    provider, exporter = _provider(sampler=Counting())
    span = deferred.begin_span(provider.get_tracer("t"), "asked", parent=REMOTE, span_id=0x9)
    span.end()
    assert asked == ["asked"]
    assert dict(exporter.get_finished_spans()[0].attributes) == {"by": "counting"}


class _RecordsParentContext(SpanProcessor):
    def __init__(self) -> None:
        self.parents: list[SpanContext | None] = []

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        self.parents.append(trace.get_current_span(parent_context).get_span_context() if parent_context else None)


@pytest.mark.parametrize("watched", [False, True], ids=["deferred", "sdk-span-at-once"])
def test_begun_from_a_parent_span_context_is_the_span_begun_from_its_context(watched: bool) -> None:
    shapes = []
    for how in ("parent", "context"):
        watcher = _RecordsParentContext()
        provider, exporter = _provider(processor=watcher if watched else None)
        if watched:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("pipetrace")
        where: dict[str, Any] = {"parent": REMOTE} if how == "parent" else {"context": _ctx(REMOTE)}
        span = deferred.begin_span(tracer, "process q", kind=SpanKind.CONSUMER, attributes={"a": "b"}, span_id=0x43,
                              start_time=5, **where)
        span.set_attribute("late", 1)
        span.end(end_time=9)
        (finished,) = exporter.get_finished_spans()
        shapes.append(_shape(finished))
        if watched:
            assert watcher.parents == [REMOTE]  # the processor saw the parent's Context at the start
    assert shapes[0] == shapes[1]
    assert shapes[0]["parent"] == REMOTE and shapes[0]["context"].trace_state == REMOTE.trace_state


def test_begun_from_a_parent_and_made_live_keeps_the_parent_context() -> None:
    watcher = _RecordsParentContext()
    provider, exporter = _provider()
    provider.add_span_processor(watcher)  # added after begin would not matter: live() starts the SDK span
    span = deferred.begin_span(provider.get_tracer("t"), "process q", parent=REMOTE, span_id=0x44)
    span.record_exception(ValueError("x"))  # becomes the SDK span
    span.end()
    assert exporter.get_finished_spans()[0].parent == REMOTE
    assert watcher.parents == [REMOTE]  # its on_start got a Context holding the parent


def test_an_invalid_parent_span_context_makes_a_root() -> None:
    provider, exporter = _provider()
    from opentelemetry.trace import INVALID_SPAN_CONTEXT

    deferred.begin_span(provider.get_tracer("t"), "root", parent=INVALID_SPAN_CONTEXT, trace_id=0x5, span_id=0x6).end()
    (span,) = exporter.get_finished_spans()
    assert span.parent is None and span.context.trace_id == 0x5


def test_plain_attributes_are_the_spans_and_later_values_are_still_checked() -> None:
    provider, exporter = _provider()
    tracer = provider.get_tracer("t")
    span = deferred.begin_span(tracer, "plain", attributes={"a": "b", "n": 2}, context=Context(), trace_id=1, span_id=2,
                          plain_attributes=True)
    span.set_attribute("late", 1.5)
    span.end()
    span = deferred.begin_span(tracer, "late list", attributes={"a": "b"}, context=Context(), trace_id=1, span_id=3,
                          plain_attributes=True)
    span.set_attribute("items", [1, 2])  # needs the SDK's cleaning: the end goes the SDK's way
    span.end()
    first, second = exporter.get_finished_spans()
    assert dict(first.attributes) == {"a": "b", "n": 2, "late": 1.5}
    assert dict(second.attributes) == {"a": "b", "items": (1, 2)}


def test_plain_attributes_still_honour_the_limits() -> None:
    provider, exporter = _provider(limits=SpanLimits(max_span_attributes=2))
    attrs = {"a": "1", "b": "2", "c": "3"}
    deferred.begin_span(provider.get_tracer("t"), "limited", attributes=attrs, context=Context(), trace_id=1,
                   span_id=2, plain_attributes=True).end()
    (span,) = exporter.get_finished_spans()
    assert len(span.attributes) == 2 and span.dropped_attributes == 1


def test_forced_ids_still_reach_a_root_begun_on_the_lean_path() -> None:
    from pipetrace.machinery.ids import force_next, release

    provider, exporter = _provider()
    tracer = provider.get_tracer("t")
    token = force_next(trace_id=0xABCDEF, span_id=0x1234)
    try:
        deferred.begin_span(tracer, "forced", context=Context()).end()
    finally:
        release(token)
    deferred.begin_span(tracer, "random", context=Context()).end()
    forced, random_ids = exporter.get_finished_spans()
    assert (forced.context.trace_id, forced.context.span_id) == (0xABCDEF, 0x1234)
    assert random_ids.context.is_valid and random_ids.context.trace_id != 0xABCDEF


def test_a_custom_id_generator_is_asked_for_a_roots_ids() -> None:
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class Sequential(IdGenerator):
        def generate_span_id(self) -> int:
            return 0x51

        def generate_trace_id(self) -> int:
            return 0x7A

    for generator in (Sequential(), DerivedIdGenerator(Sequential())):
        provider = TracerProvider(id_generator=generator, shutdown_on_exit=False)
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        deferred.begin_span(provider.get_tracer("t"), "root", context=Context()).end()
        (span,) = exporter.get_finished_spans()
        assert (span.context.trace_id, span.context.span_id) == (0x7A, 0x51)


def test_random_root_ids_are_what_the_sdk_generator_makes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's RandomIdGenerator is not called on the lean path: its ids are made the same way."""
    import random

    provider, exporter = _provider()
    tracer = provider.get_tracer("t")
    random.seed(7)
    deferred.begin_span(tracer, "lean", context=Context()).end()
    random.seed(7)
    want_trace, want_span = random.getrandbits(128), random.getrandbits(64)
    (span,) = exporter.get_finished_spans()
    assert (span.context.trace_id, span.context.span_id) == (want_trace, want_span)


def test_span_metrics_are_counted_when_the_sdk_has_them_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off (the default), no metric call is made at a span's start or end; on, the lean path counts like the SDK."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    provider, _ = _provider()
    decided = fastspan.decide(provider.get_tracer("t"), "s", Context(), SpanKind.INTERNAL, {}, (), 0x1, 0x2)
    assert isinstance(decided, fastspan.Decision) and decided.end_metrics is None
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    reader = InMemoryMetricReader()
    metered = TracerProvider(shutdown_on_exit=False, meter_provider=MeterProvider(metric_readers=[reader]))
    metered.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    span = deferred.begin_span(metered.get_tracer("t"), "s", context=Context(), trace_id=0x1, span_id=0x2)
    live_during = _live_spans(reader)
    span.end()
    assert live_during == 1 and _live_spans(reader) == 0


def _live_spans(reader: Any) -> int:
    data = reader.get_metrics_data()
    total = 0
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == "otel.sdk.span.live":
                    total += sum(int(p.value) for p in metric.data.data_points)
    return total


def _deferred_vs_live(attributes: dict[str, Any], calls: Any) -> tuple[ReadableSpan, ReadableSpan, Any]:
    """The same calls on a deferred span and on the SDK's span; (deferred's record, SDK's, the deferred handle)."""
    provider, exporter = _deferred_provider()
    tracer = provider.get_tracer("t")
    handle = deferred.begin_span(tracer, "x", attributes=dict(attributes), context=Context(), span_id=0x7,
                                 trace_id=0x8, start_time=100)
    live = fastspan.start_span(tracer, "x", attributes=dict(attributes), context=Context(), span_id=0x7,
                               trace_id=0x8, start_time=100)
    for span in (handle, live):
        calls(span)
        span.end(end_time=200)
    got, want = exporter.get_finished_spans()
    return got, want, handle


def test_deferred_span_keeps_a_status_as_the_sdk_does_without_an_sdk_span() -> None:
    """OK is final and UNSET ignored, as on the SDK's span; no SDK span is made for it (it was before)."""
    from opentelemetry.trace import Status

    def calls(span: Any) -> None:
        span.set_status(Status(StatusCode.ERROR, "first"))
        span.set_status(Status(StatusCode.UNSET))
        span.set_status(Status(StatusCode.OK))
        span.set_status(Status(StatusCode.ERROR, "after ok"))

    got, want, handle = _deferred_vs_live({"a": "b"}, calls)
    assert handle._live is None  # recorded directly
    assert _shape(got) == _shape(want) and got.status.status_code is StatusCode.OK

    got, want, handle = _deferred_vs_live({"a": "b"}, lambda s: s.set_status(Status(StatusCode.ERROR, "boom")))
    assert handle._live is None and got.status.description == want.status.description == "boom"
    # a code with a separate description: the SDK's own rules, on its span
    got, want, handle = _deferred_vs_live({"a": "b"}, lambda s: s.set_status(StatusCode.ERROR, "bad"))
    assert handle._live is not None and got.status.description == want.status.description == "bad"


def test_deferred_span_with_a_start_tag_list_is_recorded_directly_as_the_sdk_stores_it() -> None:
    """A list of one plain type (Prefect's tags) becomes the tuple the SDK stores, without an SDK span; a
    list the SDK would have to judge (mixed types) still goes through the SDK's span."""
    got, want, handle = _deferred_vs_live({"tags": ["p", "q"], "empty": [], "n": 1}, lambda s: None)
    assert handle._live is None
    assert _shape(got) == _shape(want) and got.attributes["tags"] == ("p", "q") and got.attributes["empty"] == ()
    got, want, handle = _deferred_vs_live({"mixed": ["p", 1]}, lambda s: None)
    assert handle._live is not None and _shape(got) == _shape(want)


def test_deferred_span_attributes_are_a_view_of_what_was_set() -> None:
    provider, _ = _deferred_provider()
    span = deferred.begin_span(provider.get_tracer("t"), "x", attributes={"a": 1}, context=Context())
    view = span.attributes
    assert dict(view) == {"a": 1}
    span.set_attribute("b", 2)
    assert dict(span.attributes) == {"a": 1, "b": 2}
    with pytest.raises(TypeError):
        view["c"] = 3  # type: ignore[index]


def _deferred_vs_live_links(limits: SpanLimits, calls: Any, start_links: bool = True
                            ) -> tuple[ReadableSpan, ReadableSpan, Any]:
    """The same start links and calls on a deferred span and on the SDK's eager span (one provider with
    ``limits``); (deferred's record, SDK's, the deferred handle)."""
    provider, exporter = _provider(limits=limits)
    tracer = provider.get_tracer("t")

    def given() -> list[Link]:  # fresh objects each time: the SDK bounds a given link's attributes in place
        return [Link(UNSAMPLED, {"pipetrace.link.kind": "result", "long": "long value", "x": 1}),
                Link(SpanContext(0, 0, False)), Link(REMOTE)] if start_links else []

    handle = deferred.begin_span(tracer, "step", attributes={"a": "b"}, context=Context(), span_id=0x7, trace_id=0x8,
                                 start_time=100, links=given())
    live = fastspan.start_span(tracer, "step", attributes={"a": "b"}, context=Context(), span_id=0x7, trace_id=0x8,
                               start_time=100, links=given())
    for span in (handle, live):
        calls(span)
        span.end(end_time=200)
    got, want = exporter.get_finished_spans()
    return got, want, handle


def _link_shape(span: ReadableSpan) -> tuple[Any, ...]:
    return (_shape(span), [(lk.context, dict(lk.attributes or {}), lk.dropped_attributes) for lk in span.links],
            span.dropped_links, span.status.description)


LINK_LIMITS = [SpanLimits(), SpanLimits(max_link_attributes=2), SpanLimits(max_links=2), SpanLimits(max_links=0),
               SpanLimits(max_link_attributes=2, max_attribute_length=4)]
LINK_LIMIT_IDS = ["default", "link attribute limit", "link limit", "no links", "length limit"]


def _add_links(span: Any) -> None:
    for i, attrs in enumerate(LINK_ATTRS):
        fastspan.add_link(span, SpanContext(7, 8 + i, True), attrs)  # as the Dagster adapter adds them
    span.add_link(SpanContext(0, 0, False), {"x": "y"})  # invalid with attributes: the SDK keeps it
    span.add_link(SpanContext(0, 0, False))  # invalid and nothing else: the SDK drops it
    span.add_link(SpanContext(9, 9, False))  # no attributes


@pytest.mark.parametrize("limits", LINK_LIMITS, ids=LINK_LIMIT_IDS)
@pytest.mark.parametrize("start_links", [True, False], ids=["start links", "no start links"])
def test_deferred_span_keeps_its_links_on_the_direct_path_as_the_sdk_makes_them(limits: SpanLimits,
                                                                                  start_links: bool) -> None:
    """Links given at the start and added while it runs: no SDK span, the same links, link attributes,
    drop counts, events and status as the SDK's eager span (it went live for every link before)."""
    from opentelemetry.trace import Status

    def calls(span: Any) -> None:
        _add_links(span)
        span.add_event("e", {"k": "v"})
        span.set_attribute("later", 2)
        span.set_status(Status(StatusCode.ERROR, "boom"))

    got, want, handle = _deferred_vs_live_links(limits, calls, start_links)
    assert (handle._live is None) is (limits.max_attribute_length is None)  # recorded directly (a length
    assert _link_shape(got) == _link_shape(want)  # limit applies to the span's attributes too: the SDK's span)
    assert len(got.links) == min(7 if start_links else 5, 128 if limits.max_links is None else limits.max_links)
    if got.links:
        with pytest.raises(TypeError):
            got.links[0].attributes["new"] = 1  # type: ignore[index]


@pytest.mark.parametrize("limits", LINK_LIMITS, ids=LINK_LIMIT_IDS)
def test_deferred_span_that_goes_live_passes_on_the_links_kept_so_far(limits: SpanLimits) -> None:
    def calls(span: Any) -> None:
        _add_links(span)
        span.record_exception(ValueError("boom"))  # the SDK's span from here on
        span.add_link(SpanContext(7, 20, True), {"after": "live"})

    got, want, handle = _deferred_vs_live_links(limits, calls)
    assert handle._live is not None
    shapes = [_link_shape(s) for s in (got, want)]
    for shape in shapes:  # the exception event's stack trace differs by line
        shape[0]["events"] = [(n, {k: v for k, v in a.items() if k != "exception.stacktrace"})
                              for n, a in shape[0]["events"]]
    assert shapes[0] == shapes[1] and got.links[-1].attributes == {"after": "live"} if got.links else True


def test_deferred_span_ignores_a_link_after_its_end_and_sends_links_live_without_the_sdk_parts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    provider, exporter = _deferred_provider()
    span = deferred.begin_span(provider.get_tracer("t"), "x", context=Context())
    span.add_link(REMOTE, {"a": "b"})
    span.end()
    span.add_link(REMOTE, {"c": "d"})  # ended: ignored, as the SDK ignores it
    assert span._live is None and [dict(lk.attributes) for lk in exporter.get_finished_spans()[0].links] == [{"a": "b"}]
    unsampled = deferred.begin_span(provider.get_tracer("t"), "u", context=_ctx(UNSAMPLED))
    unsampled.add_link(REMOTE, {"a": "b"})  # not recording: nothing kept, nothing recorded
    assert unsampled._added is None and not unsampled.is_recording()
    monkeypatch.setattr(deferred, "_LINKS_OK", False)  # an SDK without what the links are built with
    span = deferred.begin_span(provider.get_tracer("t"), "y", context=Context(), links=[Link(REMOTE)])
    span.add_link(UNSAMPLED, {"a": "b"})
    span.end()
    assert span._live is not None and len(exporter.get_finished_spans()[1].links) == 2


def test_deferred_span_keeps_the_sdk_spans_exception_flags_when_it_goes_live() -> None:
    """begin_span(record_exception=False, set_status_on_exception=False): an escaping exception then
    records nothing on the live span, as on the SDK's span started with those flags."""
    provider, exporter = _deferred_provider()
    tracer = provider.get_tracer("t")
    for span in (deferred.begin_span(tracer, "x", context=Context(), record_exception=False,
                                     set_status_on_exception=False),
                 fastspan.start_span(tracer, "x", context=Context(), record_exception=False,
                                     set_status_on_exception=False),
                 deferred.begin_span(tracer, "x", context=Context())):
        with pytest.raises(ValueError), span:
            raise ValueError("boom")
    quiet, sdk, default = exporter.get_finished_spans()
    assert (quiet.events, quiet.status.status_code) == (sdk.events, sdk.status.status_code) == ((), StatusCode.UNSET)
    assert default.status.status_code is StatusCode.ERROR and default.events[0].name == "exception"


# --- start_task_span: a deferred span whose record is the eager SDK span's --------------------------------------


def _eager_begin(tracer: Any, name: str, *, plain_attributes: bool = False, **kw: Any) -> Any:
    """What start_task_span called before it made deferred spans: the SDK's eager span, same arguments."""
    return fastspan.start_span(tracer, name, **kw)


class _Watching(SimpleSpanProcessor):
    """A processor that looks at running spans: a deferred span is then the SDK's own from its start."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass


_OBJ = object()  # (one object: its str has its address)
TASK_CASES = ["success", "retry", "exception", "error summary", "escaping exception", "limits", "watched",
              "unsampled", "mapped", "not clean"]


def _task_attempt(case: str) -> None:
    """An attempt's life as the Airflow adapter lives it (start with XCom links, current, user span under
    it, log ids, links added while it runs, state and result at its end), and the other ends adapters use."""
    from datetime import datetime, timezone

    from pipetrace.adapter import Attempts, record_error_summary
    from pipetrace.adapter.logs import bind_span_ids
    from pipetrace.identity import RunIdentity
    from pipetrace.spans import end_task_span, start_task_span

    ident = RunIdentity("airflow", "dag", "run1", None if case != "unsampled" else UNSAMPLED)
    base = {"cicd.pipeline.system": "airflow", "cicd.pipeline.name": "dag", "cicd.pipeline.run.id": "run1"}
    links = [Link(ident.span_context(ident.task_span_id("src", None, 1)),
                  {"pipetrace.link.kind": "xcom", "airflow.xcom.key": "return_value", "airflow.xcom.task_id": "src"}),
             None]
    attrs: dict[str, Any] = {"airflow.dag_id": "dag", "airflow.task_id": "t", "airflow.operator": "PythonOperator"}
    if case == "not clean":
        attrs.update({"tags": ["a", "b"], "obj": _OBJ, "none": None})
    mapped = case == "mapped"
    span = start_task_span(
        "airflow", "dag", "run1", "t", try_number=2, map_index=3 if mapped else None, attributes=attrs, links=links,
        ident=ident, batch="t" if mapped else None, start_time=datetime(2024, 1, 1, tzinfo=timezone.utc),
        clean_attributes=case != "not clean", base=base if case != "not clean" else None)
    attempts: Attempts[str] = Attempts()
    attempts.start("t", span)
    bind_span_ids(span)
    with trace.get_tracer_provider().get_tracer("user").start_as_current_span("user work"):
        pass
    span.add_link(ident.span_context(ident.task_span_id("w", 1, 1)), {"pipetrace.link.kind": "xcom",
                                                                       "airflow.xcom.map_index": 1})
    span.add_link(SpanContext(0, 0, False))  # invalid: dropped, as the SDK drops it
    attempts.pop("t")
    span.set_attribute("airflow.task_instance.state", "success")
    end = datetime(2024, 1, 1, 0, 1, tzinfo=timezone.utc)
    if case == "exception":
        end_task_span(span, error=ValueError("boom"), result="retry", end_time=end)
    elif case == "error summary":
        record_error_summary(span, "airflow.TaskFailure", "it failed", status=False)
        end_task_span(span, result="failure", end_time=end)
    elif case == "escaping exception":
        with pytest.raises(KeyError), span:
            raise KeyError("k")
    else:
        end_task_span(span, result="retry" if case == "retry" else "success", end_time=end)


@pytest.mark.parametrize("case", TASK_CASES)
def test_start_task_span_is_deferred_and_records_what_the_eager_span_did(case: str, monkeypatch: pytest.MonkeyPatch
                                                                         ) -> None:
    from pipetrace import spans

    limits = SpanLimits(max_links=1, max_span_attributes=12, max_attribute_length=6) if case == "limits" else None
    shapes = []
    for begin in (deferred.begin_span, _eager_begin):
        provider, exporter = _provider(limits=limits, processor=_Watching(InMemorySpanExporter())
                                       if case == "watched" else None)
        if case == "watched":
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        monkeypatch.setattr(spans, "get_tracer", lambda provider=provider: provider.get_tracer("pipetrace"))
        monkeypatch.setattr(trace, "get_tracer_provider", lambda provider=provider: provider)
        made: list[Any] = []
        monkeypatch.setattr(spans, "begin_span", lambda *a, begin=begin, made=made, **kw: made.append(
            begin(*a, **kw)) or made[-1])
        _task_attempt(case)
        finished = exporter.get_finished_spans()
        if case == "unsampled":
            assert finished == ()
            shapes.append(None)
            continue
        user, task = finished
        assert user.parent == task.context  # the user's span nests under the attempt's
        shape = _link_shape(task)
        shape[0]["events"] = [(n, {k: v for k, v in a.items() if k != "exception.stacktrace"})
                              for n, a in shape[0]["events"]]
        ended = None if case == "escaping exception" else task.end_time  # (then: the clock's now)
        shapes.append((shape, ended, getattr(task, "dropped_events", 0)))
        if begin is deferred.begin_span:  # the direct path: no SDK span unless only the SDK's can record it
            handle = made[0]
            assert isinstance(handle, deferred.DeferredSpan)
            live = case in ("exception", "escaping exception", "limits", "watched")
            assert (handle._live is not None) is live
    assert shapes[0] == shapes[1]
    if case == "success":
        from pipetrace import attributes as A

        (task_shape, links, _dropped, _description), _end, _events = shapes[0]  # type: ignore[misc]
        assert task_shape["attributes"][A.TASK_RESULT] == "success"
        assert task_shape["attributes"]["airflow.task_instance.state"] == "success"
        assert [lk[1]["pipetrace.link.kind"] for lk in links] == ["xcom", "xcom"]  # the given one and the added one


# --- the direct path's record, field for field: a Prefect-shaped and an Airflow-shaped span --------------------


def _full(span: ReadableSpan) -> dict[str, Any]:
    """Everything an exporter reads of a finished span, event timestamps and drop counts included."""
    return {**_shape(span), "end": span.end_time, "dropped_events": span.dropped_events,
            "dropped_links": span.dropped_links, "description": span.status.description,
            "event_times": [e.timestamp for e in span.events], "event_types": [type(e) for e in span.events],
            "event_dropped": [getattr(e, "dropped_attributes", 0) for e in span.events],
            "link_dropped": [lk.dropped_attributes for lk in span.links], "type": type(span)}


PREFECT_ATTRS: dict[str, Any] = {
    **{f"prefect.attr.{i}": f"v{i}" for i in range(10)}, "prefect.run.type": "task", "prefect.tags": ("a", "b"),
    "prefect.run.id": "abc", "n": 3, "f": 0.5}
STATE_EVENTS = [(f"{state}", {"prefect.state.message": "", "prefect.state.type": state.upper(),
                              "prefect.state.name": state, "prefect.state.id": f"id-{state}"})
                for state in ("Pending", "Running", "Completed")]


def _shaped(begin: Any, tracer: Any, links: int, events: list[tuple[str, dict[str, Any]]], *,
            timestamps: bool = True) -> Any:
    given = [Link(SpanContext(0x51, 0x60 + i, True), {"pipetrace.link.kind": "input", "i": i}) for i in range(links)]
    span = begin(tracer, "task run", attributes=dict(PREFECT_ATTRS), context=_ctx(REMOTE), span_id=0x7,
                 start_time=100, links=given, plain_attributes=True)
    for i, (name, attrs) in enumerate(events):
        span.add_event(name, attrs, timestamp=110 + i if timestamps else None)
    span.set_attribute("prefect.result", "success")
    from opentelemetry.trace import Status

    span.set_status(Status(StatusCode.OK))
    span.end(end_time=200)
    return span


@pytest.mark.parametrize("links", [0, 1, 2])
@pytest.mark.parametrize("fields", [True, False], ids=["made from fields", "made by the SDK's constructors"])
def test_a_prefect_shaped_deferred_span_is_recorded_field_for_field_as_the_sdk_records_it(
        links: int, fields: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain start attributes with a tuple of str (the contract of ``plain_attributes``), three state events of
    four attributes, 0-2 links: the record is made without an SDK span, and with or without the SDK's
    constructors (an SDK whose objects are not made of those fields) it is the eager span's, field for field."""
    monkeypatch.setattr(deferred, "_READABLE_BY_FIELDS", fields)
    monkeypatch.setattr(deferred, "_EVENT_BY_FIELDS", fields)
    records = []
    for begin in (deferred.begin_span, _eager_begin):
        provider, exporter = _provider()
        handle = _shaped(begin, provider.get_tracer("t"), links, STATE_EVENTS)
        records.append(exporter.get_finished_spans()[0])
        if begin is deferred.begin_span:
            assert handle._live is None  # recorded directly
    got, want = records
    assert _full(got) == _full(want)
    assert got.attributes["prefect.tags"] == ("a", "b") and len(got.events) == 3 and len(got.links) == links
    if fields:
        assert vars(got).keys() == vars(ReadableSpan("x")).keys()


def test_the_sdk_objects_are_made_from_their_fields_on_this_sdk() -> None:
    """The direct path's shortcut is on for the SDKs tested (newest and sdkmin): were it off silently, the
    per-span cost would come back without any test failing."""
    assert deferred._READABLE_BY_FIELDS and deferred._EVENT_BY_FIELDS and fastspan._NRS_FIELD


def test_event_timestamps_default_to_the_clock_as_the_sdks() -> None:
    provider, exporter = _provider()
    before = __import__("time").time_ns()
    _shaped(deferred.begin_span, provider.get_tracer("t"), 0, STATE_EVENTS, timestamps=False)
    (span,) = exporter.get_finished_spans()
    assert all(before <= e.timestamp <= __import__("time").time_ns() for e in span.events)


EVENT_CASES: list[tuple[str, dict[Any, Any] | None, bool]] = [
    # (name, attributes, recorded without an SDK span)
    ("none", None, True), ("empty", {}, True), ("plain", {"a": "x", "n": 1, "f": 1.5, "b": False}, True),
    ("a sequence", {"seq": ["a", "b"]}, False), ("a None value", {"x": None}, False),
    ("an empty key", {"": "v", "a": 1}, False), ("a non-str key", {1: "v", "a": 1}, False),
    ("over the limit", {f"k{i}": i for i in range(5)}, False), ("at the limit", {f"k{i}": i for i in range(4)}, True),
]


@pytest.mark.parametrize(("label", "attributes", "direct"), EVENT_CASES, ids=[c[0] for c in EVENT_CASES])
@pytest.mark.parametrize("limits", [SpanLimits(max_event_attributes=4), SpanLimits(max_event_attributes=4,
                                                                                     max_attribute_length=3)],
                         ids=["event limit", "length limit"])
def test_deferred_event_is_the_sdks_event(label: str, attributes: dict[Any, Any] | None, direct: bool,
                                          limits: SpanLimits) -> None:
    """Kept directly only when the SDK would store it unchanged (a key it drops, a value it cleans or cuts, a
    count over the limit: the SDK's span); either way the same event."""
    records, handles = [], []
    for begin in (deferred.begin_span, _eager_begin):
        provider, exporter = _provider(limits=limits)
        span = begin(provider.get_tracer("t"), "x", attributes={"a": "b"}, context=Context(), span_id=0x7,
                     trace_id=0x8, start_time=100)
        span.add_event("e", attributes, timestamp=150)
        span.end(end_time=200)
        records.append(exporter.get_finished_spans()[0])
        handles.append(span)
    assert _full(records[0]) == _full(records[1])
    assert (handles[0]._live is None) is (direct and limits.max_attribute_length is None)


class _Order(SpanProcessor):
    def __init__(self, seen: list[tuple[str, str]], label: str) -> None:
        self.seen, self.label = seen, label

    def on_end(self, span: ReadableSpan) -> None:
        self.seen.append((self.label, span.name))


def test_every_processor_gets_the_record_in_order_once() -> None:
    provider, exporter = _provider()
    seen: list[tuple[str, str]] = []
    provider.add_span_processor(_Order(seen, "second"))
    provider.add_span_processor(_Order(seen, "third"))
    _shaped(deferred.begin_span, provider.get_tracer("t"), 1, STATE_EVENTS)
    assert seen == [("second", "task run"), ("third", "task run")] and len(exporter.get_finished_spans()) == 1


def test_a_concurrent_multi_processor_still_gets_the_record_through_its_own_on_end() -> None:
    """Only the SDK's synchronous chain is called processor by processor; another chain is asked itself."""
    from opentelemetry.sdk.trace import ConcurrentMultiSpanProcessor

    chain = ConcurrentMultiSpanProcessor(2)
    provider = TracerProvider(id_generator=DerivedIdGenerator(), active_span_processor=chain, shutdown_on_exit=False)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    calls: list[ReadableSpan] = []
    original = chain.on_end
    chain.on_end = lambda span: (calls.append(span), original(span))  # type: ignore[method-assign]
    span = _shaped(deferred.begin_span, provider.get_tracer("t"), 0, STATE_EVENTS)
    assert span._live is None and len(calls) == 1 and exporter.get_finished_spans() == (calls[0],)
    chain.shutdown()


@pytest.mark.parametrize("current", ["non-recording", "sdk span", "deferred", "none", "invalid"])
def test_a_parent_held_in_a_context_is_read_as_get_current_span_reads_it(current: str) -> None:
    """decide reads a NonRecordingSpan's context directly; any other current span goes the API's way."""
    provider, _ = _provider()
    tracer = provider.get_tracer("t")
    if current == "non-recording":
        context = _ctx(REMOTE)
    elif current == "sdk span":
        context = trace.set_span_in_context(tracer.start_span("p"), Context())
    elif current == "deferred":
        context = trace.set_span_in_context(deferred.begin_span(tracer, "p", context=Context()), Context())
    elif current == "none":
        context = Context()
    else:
        context = _ctx(SpanContext(0, 0, False))
    decided = fastspan.decide(tracer, "x", context, SpanKind.INTERNAL, None, (), None, 0x9)
    want = trace.get_current_span(context).get_span_context()
    assert isinstance(decided, fastspan.Decision)
    assert decided.parent == (want if want.is_valid else None)
    assert decided.context.trace_id == (want.trace_id if want.is_valid else decided.context.trace_id)


@pytest.mark.parametrize("limits", LINK_LIMITS, ids=LINK_LIMIT_IDS)
def test_start_links_valid_or_not_are_kept_as_the_sdk_keeps_them(limits: SpanLimits) -> None:
    """An invalid link with attributes is kept, one without anything dropped, link attributes a dict of plain
    values (bounded in one step), of other values, or none (the SDK's ``_new_links``)."""
    def given() -> list[Link]:
        return [Link(SpanContext(0, 0, False), {"x": "y"}), Link(SpanContext(0, 0, False)),
                Link(SpanContext(0x51, 0x61, True), {"k": "v", "n": 2, "f": 0.5}),
                Link(SpanContext(0x51, 0x62, True), {"seq": ["a", "b"], "none": None, "long": "abcdefgh"}),
                Link(SpanContext(0x51, 0x63, True))]

    records = []
    for begin in (deferred.begin_span, _eager_begin):
        provider, exporter = _provider(limits=limits)
        span = begin(provider.get_tracer("t"), "x", attributes={"a": "b"}, context=Context(), span_id=0x7,
                     trace_id=0x8, start_time=100, links=given())
        span.end(end_time=200)
        records.append(exporter.get_finished_spans()[0])
        if begin is deferred.begin_span:  # (a length limit applies to the span's attributes: the SDK's span)
            assert (span._live is None) is (limits.max_attribute_length is None)
    assert _link_shape(records[0]) == _link_shape(records[1]) and _full(records[0]) == _full(records[1])


def test_a_root_decided_from_an_empty_context_is_the_one_from_its_invalid_span(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Context with no span in it (a publish outside any span) is decided as a root without the
    get_current_span calls: the same decision as a Context holding INVALID_SPAN, the SDK's reading of it;
    on a disabled tracer the same non-recording span too."""
    provider, _ = _provider()
    tracer = provider.get_tracer("pipetrace")
    empty = fastspan.decide(tracer, "s", Context(), SpanKind.PRODUCER, {"a": "b"}, (), 0xAB, 0xCD)
    held = fastspan.decide(tracer, "s", trace.set_span_in_context(trace.INVALID_SPAN, Context()), SpanKind.PRODUCER,
                           {"a": "b"}, (), 0xAB, 0xCD)
    assert isinstance(empty, fastspan.Decision) and isinstance(held, fastspan.Decision)
    assert (empty.context, empty.parent, empty.attributes) == (held.context, held.parent, held.attributes)
    assert empty.parent is None and empty.context.trace_id == 0xAB
    monkeypatch.setattr(tracer, "_is_enabled", lambda: False, raising=False)
    monkeypatch.setattr(fastspan, "_ENABLED_IS_CONFIG", False)  # (an SDK whose _is_enabled is called)
    off = fastspan.decide(tracer, "s", Context(), SpanKind.PRODUCER, None, (), None, None)
    assert isinstance(off, NonRecordingSpan)
    assert off.get_span_context() == trace.get_current_span(Context()).get_span_context()


def test_a_tracer_its_configurator_turned_off_decides_no_span() -> None:
    """An SDK tracer turned off by the provider's tracer configurator (its ``_tracer_config``, which its
    ``_is_enabled()`` reads and :func:`decide` reads directly) gives the non-recording span the SDK's
    ``start_span`` gives, with the parent's context; turned on again, a decision."""
    from opentelemetry.sdk import trace as sdk_trace

    off_rule = getattr(sdk_trace, "_disable_tracer_configurator", None)
    if off_rule is None:  # pragma: no cover - an SDK before tracer configurators
        pytest.skip("this SDK has no tracer configurators")
    provider, _ = _provider()
    tracer = provider.get_tracer("pipetrace")
    assert fastspan._ENABLED_IS_CONFIG and tracer._is_enabled()
    parent = SpanContext(0xFEED, 0xBEEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    provider._set_tracer_configurator(tracer_configurator=off_rule)
    assert not tracer._is_enabled()
    off = fastspan.decide(tracer, "s", None, SpanKind.CONSUMER, {"a": "b"}, (), None, 0x12, parent)
    sdk_off = tracer.start_span("s", context=trace.set_span_in_context(NonRecordingSpan(parent)))
    assert isinstance(off, NonRecordingSpan) and type(sdk_off) is NonRecordingSpan
    assert off.get_span_context() == sdk_off.get_span_context() == parent
    provider._set_tracer_configurator(tracer_configurator=sdk_trace._default_tracer_configurator)
    on = fastspan.decide(tracer, "s", None, SpanKind.CONSUMER, {"a": "b"}, (), None, 0x12, parent)
    assert isinstance(on, fastspan.Decision) and on.context.span_id == 0x12 and on.parent == parent
