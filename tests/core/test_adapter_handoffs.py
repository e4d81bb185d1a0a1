"""The adapter API's data hand-off helpers: producers remembered, reads turned into links, and
``observe`` (a method's result seen without changing it)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, TraceFlags
from pipetrace.adapter.handoffs import Producers, Reads, traceparent
from pipetrace.adapter.logs import bind_span_ids, unbind_span_ids
from pipetrace.adapter.patching import observe, unwrap


def _span(span_id: int, trace_id: int = 0xABC) -> NonRecordingSpan:
    return NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(1)))


class _Recording:
    """Just enough of a span to collect links."""

    def __init__(self) -> None:
        self.links: list[tuple[SpanContext, Any]] = []

    def add_link(self, context: SpanContext, attributes: Any = None) -> None:
        self.links.append((context, attributes))


def test_traceparent_of_a_span_and_of_none() -> None:
    assert traceparent(_span(0x1F, 0xABC)) == f"00-{0xABC:032x}-{0x1F:016x}-01"
    assert traceparent(NonRecordingSpan(SpanContext(0, 0, False))) is None


def test_producers_latest_attempt_wins_and_bounded() -> None:
    producers: Producers[str] = Producers(bound=2)
    producers.remember("a", _span(1))
    producers.remember("a", _span(2))  # a retry replaces the attempt that failed
    assert producers.recall("a").span_id == 2  # type: ignore[union-attr]
    producers.remember("b", _span(3))
    producers.remember("c", _span(4))
    assert producers.recall("a") is None and len(producers) == 2
    producers.remember("d", NonRecordingSpan(SpanContext(0, 0, False)))  # invalid: not kept
    assert producers.recall("d") is None


def _targets(calls: list[str]) -> Any:
    def targets(read: tuple[str, str]) -> list[Any]:
        producer, key = read
        if producer == "other-run":
            return []

        def make() -> Link:
            calls.append(producer)
            return Link(_span(hash(producer) & 0xFFFF or 1).get_span_context(), {"key": key})
        return [(producer, make)]
    return targets


def test_reads_before_the_span_become_start_links_then_later_reads_link_at_once() -> None:
    reads: Reads[tuple[str, str]] = Reads()
    calls: list[str] = []
    reads.note(("p1", "k"))
    reads.note(("p1", "k2"))  # same producer: linked once, its link made once
    reads.note(("other-run", "k"))
    links = reads.begin(_targets(calls))
    assert [lk.attributes["key"] for lk in links] == ["k"] and calls == ["p1"]  # type: ignore[index]
    span = _Recording()
    reads.attach(span)  # type: ignore[arg-type]
    reads.note(("p2", "k"))
    reads.note(("p1", "k3"))
    assert [a["key"] for _, a in span.links] == ["k"] and calls == ["p1", "p2"]
    reads.finish()
    reads.note(("p3", "k"))  # no consumer now: kept for the next one, not linked to the old span
    assert len(span.links) == 1
    assert len(reads.begin(_targets(calls))) == 1


def test_reads_bounded_and_a_failing_resolver_is_contained() -> None:
    reads: Reads[int] = Reads(bound=3)
    for i in range(10):
        reads.note(i)

    def broken(read: int) -> list[Any]:
        raise RuntimeError("orchestrator gone")
    assert reads.begin(broken) == []
    seen: list[int] = []
    assert reads.begin(lambda r: seen.append(r) or []) == [] and seen == []  # the 3 kept were consumed


def test_reads_thread_safe_note() -> None:
    reads: Reads[int] = Reads()
    span = _Recording()
    reads.begin(lambda r: [(r % 50, lambda r=r: Link(_span(r + 1).get_span_context()))])
    reads.attach(span)  # type: ignore[arg-type]
    threads = [threading.Thread(target=lambda: [reads.note(i) for i in range(200)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(span.links) == 50


class _Store:
    @classmethod
    def get(cls, key: str) -> str:
        return key.upper()

    @classmethod
    async def aget(cls, key: str) -> str:
        return key * 2

    def boom(self) -> None:
        raise ValueError("the call's own error")


def test_observe_sync_async_and_errors_pass_through() -> None:
    seen: list[tuple[Any, Any]] = []
    try:
        assert observe(_Store, "get", lambda inst, args, kw, res: seen.append((args or kw, res)))
        assert observe(_Store, "aget", lambda inst, args, kw, res: seen.append((args or kw, res)))
        assert observe(_Store, "boom", lambda inst, args, kw, res: seen.append(("boom", res)))
        assert not observe(_Store, "get", lambda *a: None)  # once
        assert _Store.get(key="a") == "A"
        assert asyncio.run(_Store.aget("b")) == "bb"
        with pytest.raises(ValueError):
            _Store().boom()
        assert seen == [({"key": "a"}, "A"), (("b",), "bb")]
    finally:
        for name in ("get", "aget", "boom"):
            unwrap(_Store, name)
    assert _Store.get("c") == "C" and len(seen) == 2


def test_log_binding_round_trip() -> None:
    import structlog  # in the test extra: this runs in every env, never skipped
    structlog.contextvars.clear_contextvars()
    tokens = bind_span_ids(_span(0x2A, 0x1))
    assert structlog.contextvars.get_contextvars() == {"trace_id": f"{1:032x}", "span_id": f"{0x2A:016x}"}
    unbind_span_ids(tokens)
    assert structlog.contextvars.get_contextvars() == {}
    assert bind_span_ids(NonRecordingSpan(SpanContext(0, 0, False))) == {}
    unbind_span_ids({})  # nothing bound: nothing to do


@pytest.mark.parametrize("limits", [None, "link limit", "length limit"])
def test_reads_noted_while_a_deferred_span_runs_are_the_links_the_sdks_span_gets(limits: str | None) -> None:
    """A deferred span keeps the read's own link (not a copy made from its parts); what is exported is what
    the SDK's span records from ``add_link`` (same links, attributes, drop counts), and the span stays deferred."""
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from pipetrace.machinery import DeferredSpan, begin_span, record

    span_limits = {None: SpanLimits(), "link limit": SpanLimits(max_links=2, max_link_attributes=1),
                   "length limit": SpanLimits(max_attribute_length=2)}[limits]
    shapes = []
    for make in (begin_span, record.start_span):
        provider = TracerProvider(span_limits=span_limits, shutdown_on_exit=False)
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        span = make(provider.get_tracer("t"), "consumer", context=Context(), trace_id=0xABC, span_id=0x1,
                    start_time=100)
        reads: Reads[tuple[str, str]] = Reads()
        reads.begin(_targets([]))
        reads.attach(span)
        for producer in ("p1", "p2", "p1", "p3"):  # p1 twice: linked once
            reads.note((producer, "value"))
        if make is begin_span:
            assert type(span) is DeferredSpan and span._live is None and len(span._added or ()) == 3
        span.end(end_time=200)
        (got,) = exporter.get_finished_spans()
        shapes.append(([(lk.context, dict(lk.attributes or {}), lk.dropped_attributes) for lk in got.links],
                       got.dropped_links))
    assert shapes[0] == shapes[1] and len(shapes[0][0]) == (2 if limits == "link limit" else 3)
