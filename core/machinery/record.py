"""The span handle's SDK record: decided (ids, parent, sampler) at the start, made now or later.

Every strategy of :mod:`pipetrace.machinery.handle` makes its record here: the eager one at once
(:func:`start_span`), the deferred one from the :class:`Decision` kept at the start
(:func:`materialise`, or a ``ReadableSpan`` built at the end).

Why: on the per-task path (a Celery publish and task run, a kombu message, an Airflow, Dagster or
Prefect attempt) the SDK's ``Tracer.start_span`` spends about 40 % of its time passing each attribute
through ``_clean_attribute_value`` under a lock, and a derived span id costs a context-variable round
trip through the id generator. For ``str``/``bool``/``int``/``float`` values cleaning returns the
value unchanged, so :func:`start_span` does exactly what the SDK's ``Tracer.start_span`` does — the
same sampler call, span class, limits, processors and ``on_start`` — but copies such values straight
into the span and takes the ids it is given. Any other value (a sequence, ``None``, a custom type),
a string length limit, or an attribute count over the limit goes through the SDK's own setter.

It relies on SDK internals (``_Span``, ``BoundedAttributes._dict``, the tracer's ``_span_limits``),
checked once per process; if they are not as expected, or the lean path ever raises, every call
uses the public ``Tracer.start_span`` (with the ids forced through :mod:`pipetrace.machinery.ids`) instead.
``tests/core/test_fastspan.py`` compares both paths span for span.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from random import getrandbits
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    Tracer,
)
from opentelemetry.trace.propagation import _SPAN_KEY

from ..util import spancontext
from .ids import force_next, plain_generator, release

log = logging.getLogger("pipetrace.spans")

PLAIN_TYPES = frozenset((str, bool, int, float))
"""Attribute value types the SDK stores unchanged (its cleaning returns them as they are)."""
_STR = frozenset((str,))


def all_plain(attributes: Mapping[str, Any]) -> bool:
    """Every key a non-empty str and every value of a type the SDK stores unchanged, so nothing needs
    cleaning: checked in C (``issuperset`` over ``map``), no Python loop over the attributes."""
    return PLAIN_TYPES.issuperset(map(type, attributes.values())) and _STR.issuperset(map(type, attributes)) and (
        "" not in attributes)


_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_RANDOM_FLAG = int(getattr(TraceFlags, "RANDOM_TRACE_ID", 0))
_NEEDED_SPAN_PARAMS = ("name", "context", "parent", "sampler", "resource", "attributes", "span_processor", "kind",
                       "links", "instrumentation_info", "record_exception", "set_status_on_exception", "limits",
                       "instrumentation_scope")


class _State:
    lean: bool | None = None  # None: not checked yet in this process
    metrics_kw: bool = False


_state = _State()


try:
    from opentelemetry.attributes import BoundedAttributes
    from opentelemetry.sdk.trace import Tracer as _SdkTracer
    from opentelemetry.sdk.trace import _Span
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
    from opentelemetry.sdk.util import BoundedList
except ImportError:  # pragma: no cover - the SDK is a dependency; without it only the public path exists
    _SdkTracer = None  # type: ignore[assignment,misc]


def _check() -> bool:
    """Whether this SDK has the internals the lean path uses (once per process; a tracer lacking an
    attribute the path reads makes it raise, and it switches itself off then)."""
    try:
        params = inspect.signature(_Span.__init__).parameters
        probe = BoundedAttributes(4, None, immutable=False)
        _state.metrics_kw = "record_end_metrics" in params
        return (all(p in params for p in _NEEDED_SPAN_PARAMS) and isinstance(getattr(probe, "_dict", None), dict)
                and hasattr(probe, "maxlen") and hasattr(probe, "max_value_len") and probe._immutable is False
                and callable(getattr(_Span, "_new_links", None)) and callable(getattr(BoundedList, "from_seq", None)))
    except Exception as exc:  # pragma: no cover - another SDK
        log.debug("pipetrace: lean span path unavailable: %r", exc)
        return False


def lean_enabled() -> bool:
    if _state.lean is None:
        _state.lean = _check()
    return bool(_state.lean)


def disable_lean() -> None:
    """Use the public ``Tracer.start_span`` from now on (tests compare both paths with it)."""
    _state.lean = False


def enable_lean() -> None:
    _state.lean = None


def _fill(bounded: Any, attributes: Mapping[str, Any]) -> None:
    """Put the sampler's attributes on a new span as the SDK would, plain values without cleaning."""
    maxlen = bounded.maxlen
    if bounded.max_value_len is not None or (maxlen is not None and len(attributes) > maxlen):
        for key, value in attributes.items():
            bounded[key] = value  # the SDK's own checks, limits and drop counts
        return
    target = bounded._dict
    if all_plain(attributes):
        target.update(attributes)
        return
    for key, value in attributes.items():
        if type(value) in PLAIN_TYPES and type(key) is str and key:
            target[key] = value
        else:
            bounded[key] = value


def _links(limits: Any, links: Sequence[Link]) -> Any:
    """A span's links as the SDK's ``_Span._new_links`` keeps them, each link's attributes put in by
    :func:`_fill` (the SDK cleans every value of every link again; a task reading 48 XComs has 48 links)."""
    valid = []
    for link in links:
        if link and (link.context.is_valid or link.attributes or link.context.trace_state):  # _is_valid_link
            # as the SDK does: the link keeps its bounded, immutable attributes
            link._attributes = link_attributes(limits, link.attributes)
            valid.append(link)
    return BoundedList.from_seq(limits.max_links, valid)


def link_attributes(limits: Any, attributes: Mapping[str, Any] | None, lean: bool = True) -> Any:
    """A link's attributes as the SDK bounds them (its immutable ``BoundedAttributes`` under the link
    limits); ``lean``: plain values put in by :func:`_fill`, without the SDK cleaning each again."""
    if not lean:
        return BoundedAttributes(limits.max_link_attributes, attributes, immutable=True,
                                 max_value_len=limits.max_attribute_length)
    most = limits.max_link_attributes
    bounded = BoundedAttributes(most, None, immutable=False, max_value_len=limits.max_attribute_length)
    if not attributes:
        pass
    elif type(attributes) is dict and limits.max_attribute_length is None and (
            most is None or len(attributes) <= most) and all_plain(attributes):
        bounded._dict.update(attributes)  # (_fill's all-plain case, inline: once per link)
    else:
        _fill(bounded, attributes)
    bounded._immutable = True
    return bounded


try:  # the SDK's span metrics when they are off (the default): nothing to count at a span's start or end
    from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics as _NoOpTracerMetrics
except ImportError:  # pragma: no cover - an SDK without span metrics
    _NoOpTracerMetrics = None  # type: ignore[assignment,misc]

try:
    from opentelemetry.sdk.trace.sampling import Decision as _SamplingDecision
    from opentelemetry.sdk.trace.sampling import ParentBased, StaticSampler
except ImportError:  # pragma: no cover
    ParentBased = StaticSampler = None  # type: ignore[assignment,misc]

_Entry = tuple[Any, bool, bool]  # (decision, sampled, recording)
_Table = tuple[_Entry, _Entry, _Entry, _Entry, _Entry]
_PARENT_BASED_PARTS = ("_root", "_remote_parent_sampled", "_remote_parent_not_sampled", "_local_parent_sampled",
                       "_local_parent_not_sampled")
# (the sampler last looked at, its decision table or None): see _static_table
_sampler_seen: list[Any] = [None, None]


def _static_table(sampler: object) -> _Table | None:
    """The SDK's static samplers — ``ALWAYS_ON``/``ALWAYS_OFF`` and ``ParentBased`` over them, the
    default ``parentbased_always_on`` among them — decide from the parent's flags alone: their
    decisions for (root, remote sampled, remote unsampled, local sampled, local unsampled) parents,
    read once per sampler. None for any other sampler, which is then called as usual."""
    if sampler is _sampler_seen[0]:
        return _sampler_seen[1]  # type: ignore[no-any-return]
    table: _Table | None = None
    try:
        parts: tuple[Any, ...] = ()
        if type(sampler) is StaticSampler:
            parts = (sampler,) * 5
        elif type(sampler) is ParentBased:
            parts = tuple(getattr(sampler, part) for part in _PARENT_BASED_PARTS)
        if parts and all(type(part) is StaticSampler for part in parts):
            decisions = [getattr(part, "_decision", None) for part in parts]
            entries = [(d, d.is_sampled(), d.is_recording()) for d in decisions if isinstance(d, _SamplingDecision)]
            if len(entries) == 5:  # every part a known decision
                table = (entries[0], entries[1], entries[2], entries[3], entries[4])
    except Exception:  # pragma: no cover - another SDK: ask the sampler
        table = None
    _sampler_seen[0], _sampler_seen[1] = sampler, table
    return table


def _static_entry(table: _Table, remote: bool, flags: int) -> _Entry:
    """(decision, sampled, recording) of a static sampler for a span whose parent is ``remote`` (or
    local) with these trace flags; ``table[0]`` is the root's."""
    return table[(1 if remote else 3) + (0 if flags & _SAMPLED else 1)]


# (a SpanContext read and made by its fields: pipetrace.util.spancontext)
_fields_by_property = spancontext.fields_by_property
_SC_IS_TUPLE, _SC_FROM_FIELDS = spancontext.IS_TUPLE, spancontext.FROM_FIELDS
_DEFAULT_STATE = spancontext.DEFAULT_STATE
_TRACE_MAX, _SPAN_MAX = spancontext.TRACE_MAX, spancontext.SPAN_MAX
_new_tuple = spancontext.new_tuple


def _non_recording_keeps_its_context() -> bool:
    """Whether a ``NonRecordingSpan`` keeps its span context as ``_context`` (every API release so far): then
    :func:`decide` reads a parent held in a ``Context`` (a run's or batch's, every attempt's) directly, instead
    of ``get_current_span`` (an ABC ``isinstance``) and ``get_span_context`` calls."""
    try:
        sc = SpanContext(0x12, 0x34, is_remote=False)
        span = NonRecordingSpan(sc)
        held = trace_api.set_span_in_context(span, Context())
        return held.get(_SPAN_KEY) is span and span._context is sc and span.get_span_context() is sc and (
            trace_api.get_current_span(held) is span)
    except Exception:  # pragma: no cover - another API
        return False


_NRS_FIELD = _non_recording_keeps_its_context()


def parent_context(parent: SpanContext) -> Context:
    """A Context whose current span is ``parent`` (for samplers and processors that read one)."""
    return trace_api.set_span_in_context(NonRecordingSpan(parent), Context())


class Decision:
    """What the SDK decides when a span starts — its span context, parent and the sampler's
    attributes — kept so the span can be built then or later (:mod:`pipetrace.machinery.handle`)."""

    __slots__ = ("context", "parent", "attributes", "end_metrics")

    def __init__(self, context: SpanContext, parent: SpanContext | None, attributes: Mapping[str, Any] | None,
                 end_metrics: Any) -> None:
        self.context = context
        self.parent = parent
        self.attributes = attributes
        self.end_metrics = end_metrics


_new_object = object.__new__


def _enabled_is_its_config() -> bool:
    """Whether the SDK tracer's ``_is_enabled()`` only reads ``self._tracer_config.is_enabled`` (the SDKs with
    tracer configurators): then :func:`decide` reads that itself, instead of a method call per span."""
    try:
        code = _SdkTracer._is_enabled.__code__
        return code.co_names == ("_tracer_config", "is_enabled") and code.co_argcount == 1 and not code.co_consts[1:]
    except Exception:  # another SDK (none before tracer configurators): getattr and call, as before
        return False


_ENABLED_IS_CONFIG = _enabled_is_its_config()
_RANDOM = bool(_RANDOM_FLAG)


def decide(tracer: Any, name: str, context: Context | None, kind: SpanKind, attributes: Mapping[str, Any] | None,
           links: Sequence[Link], trace_id: int | None, span_id: int | None,
           parent_span: SpanContext | None = None) -> Decision | NonRecordingSpan:
    """The first half of the SDK's ``Tracer.start_span``: parent, ids, sampler. A non-recording span
    when the tracer is disabled or the sampler drops the span. ``parent_span``, when given, is the
    parent (``context`` is then the Context holding it, or None to build one only if a sampler needs it)."""
    parent: SpanContext | None
    if parent_span is not None:
        parent = parent_span
    elif type(context) is Context and type(current := context.get(_SPAN_KEY)) is NonRecordingSpan and _NRS_FIELD:
        parent = current._context  # (what get_current_span(context).get_span_context() gives, without 4 calls)
    elif type(context) is Context and current is None:  # no span in it (a publish outside any span): a root
        parent = INVALID_SPAN_CONTEXT  # (what get_current_span gives for it, INVALID_SPAN's, without 2 calls)
    else:
        parent = trace_api.get_current_span(context).get_span_context()
    if type(tracer) is _SdkTracer and _ENABLED_IS_CONFIG:  # (what its _is_enabled() returns, without the call)
        if not tracer._tracer_config.is_enabled:
            return NonRecordingSpan(context=parent)  # type: ignore[arg-type]
    else:
        enabled = getattr(tracer, "_is_enabled", None)
        if enabled is not None and not enabled():
            return NonRecordingSpan(context=parent)  # type: ignore[arg-type]
    if parent is not None:
        p_tid, _, p_remote, p_flags, p_state, p_valid = parent if _SC_IS_TUPLE else _fields_by_property(parent)
    generator = tracer.id_generator
    if parent is None or not p_valid:
        parent = None
        if trace_id is not None:
            tid = trace_id
            random_id = False  # derived from the run: not random
        else:
            generator = plain_generator(generator)
            if type(generator) is RandomIdGenerator:  # what its two methods do, without the calls
                tid = getrandbits(128)
                while not tid:
                    tid = getrandbits(128)
                if span_id is None:
                    span_id = getrandbits(64)
                    while not span_id:
                        span_id = getrandbits(64)
                random_id = _RANDOM
            else:
                tid = generator.generate_trace_id()
                random_id = _RANDOM and generator.is_trace_id_random()
    else:
        tid = p_tid
        random_id = _RANDOM and bool(p_flags & _RANDOM_FLAG)
    sampler = tracer.sampler
    table = _sampler_seen[1] if sampler is _sampler_seen[0] else _static_table(sampler)
    if table is not None:  # what the static sampler would return, without the call
        decision, sampled, recording = table[0] if parent is None else table[  # (_static_entry, inline)
            (1 if p_remote else 3) + (0 if p_flags & _SAMPLED else 1)]
        trace_state = p_state if parent is not None else None
        sampled_attributes: Mapping[str, Any] | None = attributes if recording else None
    else:
        if context is None and parent_span is not None:
            context = parent_context(parent_span)
        result = sampler.should_sample(context, tid, name, kind, attributes, links)
        decision, trace_state, sampled_attributes = result.decision, result.trace_state, result.attributes
        sampled, recording = decision.is_sampled(), decision.is_recording()
    flags = _SAMPLED if sampled else _NOT_SAMPLED
    if random_id:
        flags = TraceFlags(flags | _RANDOM_FLAG)
    sid = span_id if span_id is not None else generator.generate_span_id()
    if _SC_FROM_FIELDS and 0 < tid <= _TRACE_MAX and 0 < sid <= _SPAN_MAX:
        sc = _new_tuple(SpanContext, (tid, sid, False, flags, _DEFAULT_STATE if trace_state is None else trace_state,
                                      True))
    else:
        sc = SpanContext(tid, sid, is_remote=False, trace_flags=flags, trace_state=trace_state)
    metrics = getattr(tracer, "_tracer_metrics", None)
    end_metrics = (metrics.start_span(parent, decision)
                   if metrics is not None and type(metrics) is not _NoOpTracerMetrics else None)
    if not recording:
        return NonRecordingSpan(context=sc)
    decision = _new_object(Decision)  # (its four fields set here: no __init__ call, once per span)
    decision.context, decision.parent, decision.attributes, decision.end_metrics = (
        sc, parent, sampled_attributes, end_metrics)
    return decision


def materialise(tracer: Any, name: str, decided: Decision, context: Context | None, kind: SpanKind,
                links: Sequence[Link], start_time: int | None, record_exception: bool = True,
                set_status_on_exception: bool = True) -> Span:
    """The second half: the SDK's own span class, started (``on_start`` of every processor)."""
    extra: dict[str, Any] = {"record_end_metrics": decided.end_metrics} if _state.metrics_kw else {}
    span = _Span(name=name, context=decided.context, parent=decided.parent, sampler=tracer.sampler,
                 resource=tracer.resource, attributes=None, span_processor=tracer.span_processor, kind=kind,
                 links=(), instrumentation_info=tracer.instrumentation_info, record_exception=record_exception,
                 set_status_on_exception=set_status_on_exception, limits=tracer._span_limits,
                 instrumentation_scope=tracer._instrumentation_scope, **extra)
    if links:
        span._links = _links(tracer._span_limits, links)
    if decided.attributes:
        _fill(span._attributes, decided.attributes)
    span.start(start_time=start_time, parent_context=context)
    return span


def add_link(span: Span, context: SpanContext, attributes: dict[str, Any]) -> None:
    """``span.add_link(context, attributes)``: on a started SDK span with a valid ``context``, the link the
    SDK's ``add_link`` makes (its immutable ``BoundedAttributes``, the span's limits, its ``_add_link``),
    plain values copied without cleaning (~20 µs → ~5: a Dagster step adds one per input it loads)."""
    if type(span) is _Span and _state.lean and context.is_valid:
        try:
            add, bounded = span._add_link, link_attributes(span._limits, attributes)
        except Exception:  # another SDK's internals: its own add_link
            span.add_link(context, attributes)
            return
        add(Link(context, bounded))
    else:
        span.add_link(context, attributes)


def usable(tracer: object) -> bool:
    """Whether the lean path applies to ``tracer`` (an SDK tracer, internals as expected)."""
    return type(tracer) is _SdkTracer and (_state.lean is True or (_state.lean is None and lean_enabled()))


def lean_failed(exc: BaseException) -> None:
    _state.lean = False
    log.warning("pipetrace: lean span path switched off (%r); using the SDK's start_span", exc)


def start_span(tracer: Tracer, name: str, *, context: Context | None = None, kind: SpanKind = SpanKind.INTERNAL,
               attributes: Mapping[str, Any] | None = None, links: Sequence[Link] = (),
               start_time: int | None = None, trace_id: int | None = None, span_id: int | None = None,
               record_exception: bool = True, set_status_on_exception: bool = True) -> Span:
    """``tracer.start_span(...)`` with ``span_id`` (and, for a root, ``trace_id``) given; the result is
    the same span the SDK would make. ``context`` None means the current context, as in the SDK."""
    if usable(tracer):
        try:
            links = links or ()
            decided = decide(tracer, name, context, kind, attributes, links, trace_id, span_id)
            if not isinstance(decided, Decision):
                return decided
            return materialise(tracer, name, decided, context, kind, links, start_time, record_exception,
                               set_status_on_exception)
        except Exception as exc:
            lean_failed(exc)
    token = force_next(trace_id, span_id) if trace_id is not None or span_id is not None else None
    try:
        return tracer.start_span(name, context=context, kind=kind, attributes=attributes, links=links,
                                 start_time=start_time, record_exception=record_exception,
                                 set_status_on_exception=set_status_on_exception)
    finally:
        if token is not None:
            release(token)
