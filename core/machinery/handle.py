"""The span handle: one API span whose SDK record is made as late as it can be, by one of two strategies.

Why: on a per-task or per-message path (a Celery publish and task run, a kombu message, an Airflow,
Dagster or Prefect attempt) a live SDK span costs more than the work it traces needs: most of what a
span records is only ever read after it ends. Each strategy makes the same span the SDK would have made
(``tests/core/test_fastspan.py`` compares them field by field), as late as the
caller allows:

- **eager** (:func:`start_span`): the SDK's own span, started now with the ids given (the record is
  made by :mod:`pipetrace.machinery.record`). For batch spans and a seam that wants the SDK's own
  span object.
- **deferred** (:func:`begin_span`, a :class:`DeferredSpan`): ids and the sampling decision are made at
  the start (the context must go into message headers, or be current, then: every task attempt's span,
  :func:`pipetrace.spans.start_task_span`, a Prefect attempt, a publish, a consumed message); attributes and events go
  into plain containers; the finished ``ReadableSpan`` is built in one step at the end and handed to
  the processors. Measured in a real producer on Redis, a live SDK span adds ~45 µs to a publish (its
  many small objects are cold after each broker round trip); the finished ``ReadableSpan`` ~17 µs.

A third, lazy strategy (a handle that decided nothing until first needed, for Celery's task spans) was
removed: beginning the task span as a deferred span at ``task_prerun`` does the same work without the
handle around it, ~9 µs of CPU a task less (``benchmarks/celery_inprocess.py --cpu 1 --before``).

Links, given at the start or added while a deferred span runs, stay on its direct path: they are built as
the SDK's span builds them (its link limits, ``BoundedAttributes``, drop counts; :func:`_built_links`).
Anything less common — an exception, a status with a description, a value that needs cleaning, a limit
reached, a processor that watches running spans, a tracer that is not the SDK's — turns a handle into
the SDK's own span (started with the recorded start time, everything so far replayed) and forwards every
later call to it (:meth:`SpanHandle.live`). A record that cannot be made is counted in
``pipetrace.stats()["lost"]`` (:mod:`pipetrace.util.losses`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import SynchronousMultiSpanProcessor as _SyncChain
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, Tracer

from ..util import losses
from ..util.ratelimit import warn_once_per
from . import record
from .record import start_span
from .sdk import processors_of

log = logging.getLogger("pipetrace.spans")

_PLAIN = record.PLAIN_TYPES
try:  # what the SDK's span builds its links with (checked: an SDK without them sends links to live())
    from opentelemetry.sdk.trace import _is_valid_link
    from opentelemetry.sdk.util import BoundedList
    _LINKS_OK = callable(getattr(BoundedList, "from_seq", None))
except ImportError:  # pragma: no cover - another SDK
    _LINKS_OK = False
_UNSET = Status(StatusCode.UNSET)
_new_object = object.__new__


def _rooms(limits: Any) -> tuple[Any, int, int, int]:
    """(limits, the most attributes an event, the span and the events it may have with nothing for the SDK to
    bound): -1 when it bounds each value's length (or, for an event, keeps any number; the SDK's span then);
    read once per span limits object (one per tracer provider) and kept in ``_room``."""
    most, span_most, events_most = limits.max_event_attributes, limits.max_span_attributes, limits.max_events
    room = (limits, most if most is not None and limits.max_attribute_length is None else -1,
            (span_most if span_most is not None else sys.maxsize) if limits.max_span_attribute_length is None else -1,
            events_most if events_most is not None else sys.maxsize)
    _room[0] = room
    return room


_room: list[tuple[Any, int, int, int]] = [(None, -1, -1, -1)]  # the span limits last seen and their _rooms


def _made_by_fields(cls: type, fields: dict[str, Any], **kwargs: Any) -> bool:
    """Whether ``cls(**kwargs)`` is an object whose ``__dict__`` is exactly ``fields`` (as in every SDK release
    so far): then one is made as ``object.__new__`` plus its ``__dict__``, without the Python ``__init__``
    call(s) (an event's two, a finished span's one with 13 keyword arguments; per span on the task's thread)."""
    try:
        made = cls(**kwargs)
        fast: Any = _new_object(cls)
        fast.__dict__ = dict(fields)
        return vars(made) == fields and type(fast) is cls and vars(fast) == fields
    except Exception:  # pragma: no cover - another SDK: its constructors
        return False


_EVENT_PROBE: dict[str, Any] = {"_name": "e", "_timestamp": 7, "_attributes": {"k": 1}}
_EVENT_BY_FIELDS = _made_by_fields(Event, _EVENT_PROBE, name="e", attributes={"k": 1}, timestamp=7)


def _sdk_no_op_hooks() -> set[Any]:
    hooks: set[Any] = {SpanProcessor.on_start, getattr(SpanProcessor, "_on_ending", None)}
    try:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        for cls in (BatchSpanProcessor, SimpleSpanProcessor):
            hooks.update((cls.on_start, getattr(cls, "_on_ending", None)))
    except ImportError:  # pragma: no cover
        pass
    hooks.discard(None)
    return hooks


_NO_OP_HOOKS = _sdk_no_op_hooks()
# (the processors tuple last checked, whether all of them ignore running spans)
_checked: list[Any] = [None, False]


def _ignores_running_spans(processor: object) -> bool:
    cls = type(processor)
    if getattr(cls, "ignores_running_spans", False):  # pipetrace's processors say so themselves
        return True
    ending = getattr(cls, "_on_ending", None)
    return cls.on_start in _NO_OP_HOOKS and (ending is None or ending in _NO_OP_HOOKS)  # type: ignore[attr-defined]


def emits_directly(tracer: Any) -> bool:
    """True when every processor of ``tracer`` only looks at ended spans: a ``ReadableSpan`` built at
    the end is then all they would ever have seen."""
    processors = processors_of(tracer)
    if processors is None:
        return False
    if processors is not _checked[0]:
        _checked[1] = all(_ignores_running_spans(p) for p in processors)
        _checked[0] = processors
    return _checked[1] is True


def _plain_sequence(value: Any) -> bool:
    """A list or tuple of values of one plain type: the SDK stores it as their tuple (every SDK release)."""
    if type(value) not in (list, tuple) or not value:
        return type(value) in (list, tuple)
    first = type(value[0])
    return first in _PLAIN and all(type(v) is first for v in value)


def _as_stored(attributes: dict[str, Any]) -> bool:
    """:func:`record.all_plain`, also accepting :func:`_plain_sequence` values, which become tuples in place as the
    SDK stores them (a tag list); False (``attributes`` then partly converted) when only the SDK can say."""
    for key, value in attributes.items():
        if type(value) in _PLAIN and type(key) is str and key:
            continue
        if type(key) is str and key and _plain_sequence(value):
            attributes[key] = tuple(value)  # (an existing key: the dict does not change size)
        else:
            return False
    return True


def _fits(limits: Any, count: int) -> bool:
    """No length limit to apply and not more attributes than the limit: nothing for the SDK to drop."""
    maxlen = limits.max_span_attributes
    return limits.max_span_attribute_length is None and (maxlen is None or count <= maxlen)


def _plain_attributes(tracer: Any, attributes: Mapping[str, Any] | None, extra: dict[str, Any] | None
                      ) -> dict[str, Any] | None:
    """The span's attributes as the SDK would store them, or None when only the SDK's bounded
    attributes can say it (limits to apply, a value to clean)."""
    out = dict(attributes) if attributes else {}
    if extra:
        out.update(extra)
    return out if _fits(tracer._span_limits, len(out)) and _as_stored(out) else None


class SpanHandle(trace_api.Span):
    """What every strategy's handle is: an API span that forwards what it cannot keep itself to the
    SDK span (:meth:`live`), made on demand with everything recorded so far."""

    __slots__ = ()

    def live(self) -> Span:  # pragma: no cover - each strategy has its own
        raise NotImplementedError

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        self.live().set_status(status, description)

    def record_exception(self, exception: BaseException, attributes: Mapping[str, Any] | None = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        self.live().record_exception(exception, attributes, timestamp, escaped)

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        self.live().add_link(context, attributes)


class DeferredSpan(SpanHandle):
    """A span whose ids and sampling were decided at its start and whose record is made at its end."""

    __slots__ = ("_tracer", "name", "kind", "start_time", "_decided", "_context", "_links", "_extra", "_events",
                 "_live", "_done", "_owned", "_from_parent", "_status", "_added",
                 "_on_exception", "_sc")

    def __init__(self, tracer: Any, name: str, kind: SpanKind, start_time: int, decided: Any,
                 context: Context | None, links: Sequence[Link], live: Span | None = None,
                 owned: dict[str, Any] | None = None, from_parent: bool = False) -> None:
        # the start attributes when the caller vouched for them (see begin_span): plain values set later go
        # straight in, and the end does not check them one by one again
        self._owned = owned
        self._from_parent = from_parent  # begun from a parent span context: its Context is built if needed
        self._tracer = tracer
        self.name = name
        self.kind = kind
        self.start_time = start_time
        self._decided = decided
        self._context = context
        self._links = links
        self._extra: dict[str, Any] | None = None
        self._events: list[Event] | None = None
        self._added: list[Link] | None = None  # links added while it runs, each as the SDK's add_link makes it
        self._on_exception: tuple[bool, bool] | None = None  # the SDK span's two flags, when not both True
        self._status: Status | None = None  # set by set_status(Status) as the SDK sets it; None: unset
        self._live = live
        self._done = False
        # its span context: decided at its start, the same object whichever span records it (read several
        # times a task: made current, log ids, propagation by the orchestrator's own client)
        self._sc: SpanContext = decided.context if live is None and type(decided) is record.Decision else (
            (live or decided).get_span_context())

    # --- the API span -------------------------------------------------------------------------------

    def get_span_context(self) -> SpanContext:
        return self._sc

    def is_recording(self) -> bool:
        if self._live is not None:
            return self._live.is_recording()
        return not self._done and isinstance(self._decided, record.Decision)

    def set_attribute(self, key: str, value: Any) -> None:
        if self._live is not None:
            self._live.set_attribute(key, value)
        elif not self._done:
            owned = self._owned
            if owned is not None and self._extra is None and type(value) in _PLAIN and type(key) is str and key:
                owned[key] = value
                return
            if self._extra is None:  # from here on every later value goes here, in the order set
                self._extra = {}
            self._extra[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self._live is not None:
            self._live.set_attributes(attributes)
        elif not self._done:
            for key, value in attributes.items():
                self.set_attribute(key, value)

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None,
                  timestamp: int | None = None) -> None:
        """Kept as the SDK's span keeps it when nothing is to be bounded or cleaned (within the event
        attribute limit, no length limit, non-empty str keys, plain values: checked in C, no Python loop)."""
        if self._live is None and not self._done:
            limits = self._tracer._span_limits
            rooms = _room[0]
            if rooms[0] is not limits:
                rooms = _rooms(limits)
            if not attributes:
                attrs: dict[str, Any] = {}
            elif len(attributes) <= rooms[1] and record.all_plain(attributes):
                attrs = dict(attributes)
            else:
                self.live().add_event(name, attributes, timestamp)
                return
            if self._events is None:
                self._events = []
            if timestamp is None:
                timestamp = time.time_ns()
            if _EVENT_BY_FIELDS:  # Event(name, attrs, timestamp) without its two __init__ calls
                event = _new_object(Event)
                event.__dict__ = {"_name": name, "_timestamp": timestamp, "_attributes": attrs}
            else:
                event = Event(name, attrs, timestamp)
            self._events.append(event)
        else:
            self.live().add_event(name, attributes, timestamp)

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        """Kept as the SDK's ``add_link`` makes it (its ``BoundedAttributes`` under the link limits), to be
        appended to the span's links at its end; an invalid link is ignored as the SDK ignores it."""
        if self._live is None and not self._done and _LINKS_OK and isinstance(self._decided, record.Decision):
            if not _is_valid_link(context, attributes):
                return
            # plain values copied without cleaning when the lean path is on, as record.add_link does
            bounded = record.link_attributes(self._tracer._span_limits, attributes, record.lean_enabled())
            if self._added is None:
                self._added = []
            self._added.append(Link(context, bounded))
        elif not self._done or self._live is not None:
            self.live().add_link(context, attributes)

    def keep_link(self, link: Link) -> None:
        """``add_link(link.context, link.attributes)`` for a ``link`` made for this span alone (a data read's,
        :class:`pipetrace.adapter.handoffs.Reads`): kept itself, its attributes bounded in place as a start
        link's are, instead of a second ``Link`` made from its parts."""
        if self._live is None and not self._done and _LINKS_OK and type(self._decided) is record.Decision:
            context, attributes = link.context, link.attributes
            if not (context and (context.is_valid or attributes or context.trace_state)):  # _is_valid_link
                return
            link._attributes = record.link_attributes(self._tracer._span_limits, attributes,
                                                      record._state.lean is True or record.lean_enabled())
            if self._added is None:
                self._added = []
            self._added.append(link)
        else:
            self.add_link(link.context, link.attributes)

    def update_name(self, name: str) -> None:
        if self._live is not None:
            self._live.update_name(name)
        elif not self._done:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """A ``Status`` without a separate description is kept as the SDK keeps it (OK is final, UNSET
        ignored); anything else (a code and description, the SDK's warning) goes to the SDK's span."""
        if self._live is None and not self._done and type(status) is Status and description is None:
            current = self._status
            if (current is None or current.status_code is not StatusCode.OK) and (
                    status.status_code is not StatusCode.UNSET):
                self._status = status
            return
        self.live().set_status(status, description)

    def __exit__(self, exc_type: Any, exc_val: BaseException | None, exc_tb: Any) -> None:
        if exc_val is not None and self.is_recording():
            self.live().__exit__(exc_type, exc_val, exc_tb)  # the SDK's rules for an escaping exception
            return
        self.end()

    # --- what pipetrace reads of a running span -------------------------------------------------------

    @property
    def attributes(self) -> Mapping[str, Any]:
        if self._live is not None:
            return getattr(self._live, "attributes", None) or MappingProxyType({})
        decided = self._decided
        start = decided.attributes if isinstance(decided, record.Decision) else None
        if not self._extra and type(start) is dict:  # a view, as the SDK's running span gives (no copy)
            return MappingProxyType(start)
        out = dict(start or {})
        if self._extra:
            out.update(self._extra)
        return MappingProxyType(out)

    @property
    def parent(self) -> SpanContext | None:
        if self._live is not None:
            return getattr(self._live, "parent", None)
        decided = self._decided
        return decided.parent if isinstance(decided, record.Decision) else None

    def live(self) -> Span:
        """The SDK span itself, made now with the recorded start time and everything recorded so far
        (for the rare paths that record more than attributes and events); end it as usual."""
        if self._live is None:
            decided = self._decided
            if isinstance(decided, record.Decision) and not self._done:
                context = self._context
                if self._from_parent and decided.parent is not None:
                    context = record.parent_context(decided.parent)
                live = record.materialise(self._tracer, self.name, decided, context, self.kind,
                                            self._links, self.start_time, *(self._on_exception or ()))
                if self._extra:
                    live.set_attributes(self._extra)
                for event in self._events or ():
                    live.add_event(event.name, event.attributes, event.timestamp)
                if self._status is not None:
                    live.set_status(self._status)
                for link in self._added or ():  # as built by add_link (its drop counts kept)
                    live._add_link(link)  # type: ignore[attr-defined]
                self._added = None
                self._live = live
            else:
                self._live = NonRecordingSpan(self.get_span_context())
            self._done = True
        return self._live

    def end(self, end_time: int | None = None) -> None:
        if self._live is not None:
            self._live.end(end_time=end_time)
            return
        if self._done:
            return
        decided = self._decided
        if type(decided) is not record.Decision:
            self._done = True
            return
        tracer = self._tracer
        end = end_time if end_time is not None else time.time_ns()
        try:
            limits = tracer._span_limits
            rooms = _room[0]
            if rooms[0] is not limits:
                rooms = _rooms(limits)
            events = self._events
            attrs = None
            try:  # (processors_of, inline: one span's end)
                direct = tracer.span_processor._span_processors is _checked[0] and _checked[1]
            except AttributeError:
                direct = False
            if (direct or emits_directly(tracer)) and (_LINKS_OK or not (self._links or self._added)) and (
                    not events or len(events) <= rooms[3]):
                attrs = self._owned
                if attrs is None:
                    attrs = _plain_attributes(tracer, decided.attributes, self._extra)
                elif self._extra:  # (set after a value the owned dict could not take)
                    attrs = attrs if record.all_plain(self._extra) else None
                    if attrs is not None:
                        attrs.update(self._extra)
                if attrs is not None and len(attrs) > rooms[2]:
                    attrs = None
            if attrs is None:
                self.live().end(end_time=end)
                return
            self._done = True  # (from here on nothing of it changes: what _emit reads is final)
            links = _built_links(limits, self._links, self._added) if self._links or self._added else ()
            if decided.end_metrics is not None:
                decided.end_metrics()
            _emit(self, attrs, end, links)
        except Exception as exc:
            losses.count("span_record")
            warn_once_per(log, "deferred-end", "pipetrace: could not record span %s: %r", self.name, exc)


def _built_links(limits: Any, given: Sequence[Link], added: list[Link] | None) -> Any:
    """The span's links as the SDK's span holds them: those given at the start as its ``_new_links`` makes
    them (valid ones, attributes bounded in place), then those added while it ran, in a ``BoundedList``
    under the link limit (its drop count the SDK's); a tuple when none was added and none is dropped (what an
    exporter reads of it is the same: the links, none dropped; as the events, a tuple)."""
    valid = []
    if given:  # plain values put in without cleaning when the lean path is on, as record._links does
        lean = record._state.lean is True or record.lean_enabled()
        for link in given:
            if not link:
                continue
            context, attributes = link.context, link.attributes
            if context and (context.is_valid or attributes or context.trace_state):  # the SDK's _is_valid_link
                link._attributes = record.link_attributes(limits, attributes, lean)
                valid.append(link)
    most = limits.max_links
    if added is None and (most is None or len(valid) <= most):
        return tuple(valid)
    links = BoundedList.from_seq(most, valid) if valid else BoundedList(most)
    for link in added or ():
        links.append(link)
    return links


def _emit(span: DeferredSpan, attrs: dict[str, Any], end: int, links: Any = ()) -> None:
    """Hand an ended deferred span's record, the ``ReadableSpan`` the SDK's span would give, to the processors
    (as the SDK's synchronous multi-processor does: each in turn, without its own call in between)."""
    tracer, decided, events = span._tracer, span._decided, span._events
    fields = {"_name": span.name, "_context": decided.context, "_kind": span.kind,
              "_instrumentation_info": tracer.instrumentation_info,
              "_instrumentation_scope": tracer._instrumentation_scope, "_parent": decided.parent,
              "_start_time": span.start_time, "_end_time": end, "_attributes": attrs,
              "_events": tuple(events) if events else (), "_links": links, "_resource": tracer.resource,
              "_status": span._status or _UNSET}
    if _READABLE_BY_FIELDS:  # ReadableSpan(...) without its __init__ call (13 keyword arguments)
        readable = _new_object(ReadableSpan)
        readable.__dict__ = fields
    else:
        readable = ReadableSpan(**{key[1:]: value for key, value in fields.items()})
    chain = tracer.span_processor
    if type(chain) is _SyncChain:
        for processor in chain._span_processors:
            processor.on_end(readable)
    else:
        chain.on_end(readable)


_READABLE_PROBE = {f"_{key}": object() for key in (
    "name", "context", "kind", "instrumentation_info", "instrumentation_scope", "parent", "start_time", "end_time",
    "attributes", "events", "links", "resource", "status")}
_READABLE_BY_FIELDS = _made_by_fields(ReadableSpan, _READABLE_PROBE,
                                      **{key[1:]: value for key, value in _READABLE_PROBE.items()})


def begin_span(tracer: Tracer, name: str, *, kind: SpanKind = SpanKind.INTERNAL,
               attributes: Mapping[str, Any] | None = None, context: Context | None = None, links: Sequence[Link] = (),
               trace_id: int | None = None, span_id: int | None = None, start_time: int | None = None,
               parent: SpanContext | None = None, plain_attributes: bool = False,
               record_exception: bool = True, set_status_on_exception: bool = True) -> DeferredSpan:
    """Start a span that will be recorded when it ends (or, when a processor watches running spans,
    the SDK's span at once); ``context`` None means the current one, as in the SDK.

    ``parent``: the parent span context itself (a consumer's extracted message context), instead of a
    Context holding it — one is built only if a sampler or processor asks for it.
    ``plain_attributes``: the caller hands ``attributes`` over (a dict it does not touch again) and
    vouches that every key is a non-empty str and every value is a str/bool/int/float or a tuple of values of
    one of those types (what the SDK stores for a sequence: Prefect's tags), so the end does not check them
    one by one again (what is set later still is). A list is not: the SDK stores it as a tuple.
    ``record_exception``/``set_status_on_exception``: as in the SDK's ``start_span`` (its span's, if it goes live)."""
    start = start_time if start_time is not None else time.time_ns()
    if parent is not None and not (parent[5] if record._SC_IS_TUPLE else parent.is_valid):  # (no property call)
        parent, context = None, context if context is not None else Context()
    try:  # (processors_of and record.usable, inline: one span's start)
        direct = tracer.span_processor._span_processors is _checked[0] and _checked[1]  # type: ignore[attr-defined]
    except AttributeError:
        direct = False
    if (type(tracer) is record._SdkTracer and record._state.lean is True or record.usable(tracer)) and (
            direct or emits_directly(tracer)):
        try:
            decided = record.decide(tracer, name, None if parent is not None else context, kind, attributes, links,
                                      trace_id, span_id, parent)
            owned = None
            if plain_attributes and type(attributes) is dict and type(decided) is record.Decision and (
                    decided.attributes is attributes):  # the sampler kept the caller's dict as the span's
                owned = attributes
            span = DeferredSpan(tracer, name, kind, start, decided, None if parent is not None else context, links,
                                owned=owned, from_parent=parent is not None)
            if not (record_exception and set_status_on_exception):
                span._on_exception = (record_exception, set_status_on_exception)
            return span
        except Exception as exc:
            record.lean_failed(exc)
    if parent is not None:
        context = record.parent_context(parent)
    live = record.start_span(tracer, name, context=context, kind=kind, attributes=attributes, links=links,
                               start_time=start, trace_id=trace_id, span_id=span_id, record_exception=record_exception,
                               set_status_on_exception=set_status_on_exception)
    return DeferredSpan(tracer, name, kind, start, live, context, links, live=live)


__all__ = ["DeferredSpan", "SpanHandle", "begin_span", "emits_directly", "start_span"]
