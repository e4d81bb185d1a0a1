"""SpanRecord: the store's row, built from an SDK ReadableSpan and read back by queries and exports."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from .. import attributes as A


def _attrs(mapping: Any) -> dict[str, Any]:
    # SDK attributes are already cleaned to str/bool/int/float or tuples of them; JSON writes tuples as lists.
    return dict(mapping) if mapping else {}


_resource_cache: dict[int, tuple[Any, dict[str, Any]]] = {}


def _resource_attrs(resource: Any) -> dict[str, Any]:
    """Resources are shared by every span of a process: convert each one once."""
    if resource is None:
        return {}
    cached = _resource_cache.get(id(resource))
    if cached is not None and cached[0] is resource:
        return cached[1]
    if len(_resource_cache) > 64:
        _resource_cache.clear()
    attrs = _attrs(resource.attributes)
    _resource_cache[id(resource)] = (resource, attrs)
    return attrs


def _as_text(value: Any) -> str | None:
    return str(value) if value is not None else None


class _TextAttribute:
    """A read-only record field that is one span attribute as text (``None`` when absent)."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __get__(self, record: SpanRecord, owner: type | None = None) -> str | None:
        return _as_text(record.attributes.get(self.key))


@dataclass
class SpanRecord:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str = "UNSET"
    status_message: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""

    @property
    def duration_ms(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e6

    system = _TextAttribute(A.SYSTEM)
    pipeline = _TextAttribute(A.PIPELINE_NAME)
    run_id = _TextAttribute(A.PIPELINE_RUN_ID)
    task = _TextAttribute(A.TASK_NAME)

    @property
    def result(self) -> str | None:
        return _as_text(self.attributes.get(A.PIPELINE_RESULT if A.PIPELINE_RESULT in self.attributes
                                             else A.TASK_RESULT))

    @property
    def is_run(self) -> bool:
        return A.is_run_span(self.name, self.kind, self.attributes)

    @property
    def quality(self) -> int:
        """A live span (2) replaces an after-the-fact one (1) for the same ids, never the reverse."""
        return 1 if self.attributes.get(A.SYNTHETIC) else 2

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id, "span_id": self.span_id, "parent_span_id": self.parent_span_id,
            "name": self.name, "kind": self.kind, "start_ns": self.start_ns, "end_ns": self.end_ns,
            "status": self.status, "status_message": self.status_message, "attributes": self.attributes,
            "events": self.events, "links": self.links, "resource": self.resource, "scope": self.scope,
        }


def from_readable(span: ReadableSpan) -> SpanRecord:
    ctx = span.context
    assert ctx is not None
    parent = span.parent
    status = span.status
    kind = span.kind.name if span.kind is not None else "INTERNAL"
    return SpanRecord(
        trace_id=f"{ctx.trace_id:032x}",
        span_id=f"{ctx.span_id:016x}",
        parent_span_id=f"{parent.span_id:016x}" if parent is not None and parent.is_valid else None,
        name=span.name,
        kind=kind,
        start_ns=int(span.start_time or 0),
        end_ns=int(span.end_time or span.start_time or 0),
        status=status.status_code.name if status is not None else StatusCode.UNSET.name,
        status_message=status.description if status is not None else None,
        attributes=_attrs(span.attributes),
        events=[{"name": e.name, "time_ns": int(e.timestamp or 0), "attributes": _attrs(e.attributes)}
                for e in span.events],
        links=[{"trace_id": f"{lk.context.trace_id:032x}", "span_id": f"{lk.context.span_id:016x}",
                "attributes": _attrs(lk.attributes)} for lk in span.links],
        resource=_resource_attrs(span.resource),
        scope=span.instrumentation_scope.name if span.instrumentation_scope is not None else "",
    )


_encoder = json.JSONEncoder(separators=(",", ":"), default=str)
_c_encoder = getattr(json.encoder, "c_make_encoder", None)
# The C encoder made once with ``_encoder``'s settings: ``JSONEncoder.encode`` makes a new one per call
# (~1.7 µs of a ~6 µs dump of a span's attributes). No circular check: span values are flat (the SDK
# cleans attributes to primitives and sequences of them), and a dict of them cannot hold itself.
_iterencode = (_c_encoder(None, str, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True)
               if _c_encoder is not None else None)


def dumps(value: Any) -> str:
    """``value`` as compact JSON, as ``json.dumps(value, separators=(",", ":"), default=str)`` writes it."""
    if _iterencode is None or isinstance(value, str):
        return _encoder.encode(value)
    return "".join(_iterencode(value, 0))


def derived_columns(name: str, kind: str, attrs: Mapping[str, Any]) -> tuple[Any, ...]:
    """The indexed columns read from a span's attributes: system, pipeline, run id, task, result, is_run,
    quality (the same as ``SpanRecord``'s properties, without building one)."""
    get = attrs.get
    system, pipeline, run_id, task = get(A.SYSTEM), get(A.PIPELINE_NAME), get(A.PIPELINE_RUN_ID), get(A.TASK_NAME)
    result = get(A.PIPELINE_RESULT, get(A.TASK_RESULT))
    return (None if system is None else str(system), None if pipeline is None else str(pipeline),
            None if run_id is None else str(run_id), None if task is None else str(task),
            None if result is None else str(result),
            1 if A.is_run_span(name, kind, attrs) else 0,
            1 if get(A.SYNTHETIC) else 2)


_resource_json_cache: dict[int, tuple[Any, str]] = {}


def resource_json(resource: Any, attrs: Any = None) -> str:
    """``attrs`` (the attributes of ``resource``; read from it when not given) as JSON, encoded once per
    resource object (a process has one resource for all its spans): a hit is one dict lookup."""
    cached = _resource_json_cache.get(id(resource))
    if cached is not None and cached[0] is resource:
        return cached[1]
    if len(_resource_json_cache) > 64:
        _resource_json_cache.clear()
    text = dumps(_resource_attrs(resource) if attrs is None else attrs)
    _resource_json_cache[id(resource)] = (resource, text)
    return text


# An event's and a link's JSON, as ``dumps`` writes the dicts ``from_readable`` makes of them, formatted
# around their attributes' JSON: no dict built per event or link, and the ids and numbers need no encoder.
_EVENT = '{"name":%s,"time_ns":%d,"attributes":%s}'
_LINK = '{"trace_id":"%032x","span_id":"%016x","attributes":%s}'
_json_text = json.encoder.encode_basestring_ascii  # a str as ``dumps`` writes it


def _span_attrs(span: ReadableSpan) -> Mapping[str, Any]:
    return _attrs(span.attributes)


# The name of a span kind and of a status code, looked up by the member's identity: an enum member's
# ``name`` and its hash are Python-level calls; ``id`` and a dict lookup are not.
_KIND_NAMES: dict[int, str] = {id(kind): kind.name for kind in SpanKind}
_KIND_NAMES[id(None)] = SpanKind.INTERNAL.name  # the record path's default for a span without a kind
_STATUS_NAMES: dict[int, str] = {id(code): code.name for code in StatusCode}


def _plain_iterencode(value: Any, _indent_level: int) -> tuple[str]:
    """``_iterencode``'s call over the plain encoder, for an interpreter without ``json``'s C encoder."""
    return (_encoder.encode(value),)


def readable_row(span: ReadableSpan, span_attributes: Callable[[ReadableSpan], Mapping[str, Any]] = _span_attrs,
                 attributes: Callable[[Any], Mapping[str, Any]] = _attrs) -> tuple[Any, ...]:
    """The store row (``backend.SPAN_COLUMNS`` order) of an SDK span, encoded straight from it: the
    export thread's share of ingest, so no ``SpanRecord`` is built on the way.

    ``span_attributes`` (of a span) and ``attributes`` (of an event or link) read a finished span's
    attribute mappings: by default a copy, made through the public mapping API. The processing layer
    passes readers that return the SDK's plain dicts under its ``BoundedAttributes`` (only read here,
    never kept): walking those key by key in Python costs ~3.7 µs a span. (The store may not reach into
    the SDK's internals itself: ``pipetrace.machinery`` owns them.)

    Written for the export thread, where it runs once a span: the helpers it would call (``dumps``, the
    enum names) are inlined, and a reader's non-dict mapping is copied (JSON encodes dicts only);
    ``from_readable`` + ``sqlite._row`` is the plain reference, and tests compare the two row for row,
    with and without the C encoder."""
    ctx = span.context
    assert ctx is not None
    parent = span.parent
    status = span.status
    name = span.name
    kind_of = span.kind
    kind = _KIND_NAMES.get(id(kind_of)) or kind_of.name
    attrs = span_attributes(span)
    if type(attrs) is not dict:
        attrs = _attrs(attrs)
    start = int(span.start_time or 0)
    if status is None:
        code, description = StatusCode.UNSET.name, None
    else:
        status_code = status.status_code
        code, description = _STATUS_NAMES.get(id(status_code)) or status_code.name, status.description
    encode = _iterencode or _plain_iterencode
    events = span.events
    if events:
        parts = []
        for e in events:
            ea = attributes(e.attributes)
            parts.append(_EVENT % (_json_text(e.name), int(e.timestamp or 0),
                                   "".join(encode(ea if type(ea) is dict else _attrs(ea), 0))))
        events_json = "[" + ",".join(parts) + "]"
    else:
        events_json = "[]"
    links = span.links
    if links:
        parts = []
        for lk in links:
            la = attributes(lk.attributes)
            lctx = lk.context
            la = la if type(la) is dict else _attrs(la)
            parts.append(_LINK % (lctx.trace_id, lctx.span_id, "".join(encode(la, 0))))
        links_json = "[" + ",".join(parts) + "]"
    else:
        links_json = "[]"
    scope = span.instrumentation_scope
    return (
        f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}",
        f"{parent.span_id:016x}" if parent is not None and parent.is_valid else None,
        name, kind, start, int(span.end_time or start), code, description,
        *derived_columns(name, kind, attrs),
        "".join(encode(attrs, 0)), events_json, links_json, resource_json(span.resource),
        scope.name if scope is not None else "",
    )

