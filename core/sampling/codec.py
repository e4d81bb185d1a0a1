"""A finished span as one JSON text and back: how held spans wait on disk for their run's end."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _attrs(mapping: Any) -> dict[str, Any]:
    return {str(k): _plain(v) for k, v in (mapping or {}).items()}


def _ctx(sc: SpanContext) -> list[Any]:
    return [f"{sc.trace_id:032x}", f"{sc.span_id:016x}", int(sc.trace_flags), sc.trace_state.to_header(),
            bool(sc.is_remote)]


def _unctx(raw: list[Any]) -> SpanContext:
    trace_id, span_id, flags, state, remote = raw
    return SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=remote, trace_flags=TraceFlags(flags),
                       trace_state=TraceState.from_header([state]) if state else TraceState())


def encode(span: ReadableSpan) -> str:
    assert span.context is not None
    resource = span.resource
    scope = span.instrumentation_scope
    status = span.status
    return json.dumps({
        "n": span.name, "c": _ctx(span.context), "p": _ctx(span.parent) if span.parent else None,
        "k": span.kind.value if span.kind is not None else 0, "s": span.start_time, "e": span.end_time,
        "st": [status.status_code.value, status.description] if status is not None else [0, None],
        "a": _attrs(span.attributes),
        "ev": [[ev.name, ev.timestamp, _attrs(ev.attributes)] for ev in span.events],
        "l": [[_ctx(lk.context), _attrs(lk.attributes)] for lk in span.links],
        "r": [_attrs(resource.attributes), resource.schema_url] if resource is not None else None,
        "sc": [scope.name, scope.version, scope.schema_url] if scope is not None else None,
    }, separators=(",", ":"), default=str)


class Decoder:
    """Decodes held spans; shares one Resource object per distinct resource (they repeat)."""

    def __init__(self) -> None:
        self._resources: dict[str, Resource] = {}

    def _resource(self, raw: list[Any] | None) -> Resource | None:
        if raw is None:
            return None
        key = json.dumps(raw, sort_keys=True)
        res = self._resources.get(key)
        if res is None:
            res = self._resources[key] = Resource(raw[0], raw[1] or None)
        return res

    def decode(self, text: str, extra_attributes: dict[str, Any] | None = None) -> ReadableSpan:
        d = json.loads(text)
        attrs = d["a"]
        if extra_attributes:
            attrs = {**attrs, **extra_attributes}
        code, desc = d["st"]
        scope = d["sc"]
        return ReadableSpan(
            name=d["n"], context=_unctx(d["c"]), parent=_unctx(d["p"]) if d["p"] else None,
            resource=self._resource(d["r"]), attributes=attrs,
            events=[Event(name, attrs_, ts) for name, ts, attrs_ in d["ev"]],
            links=[Link(_unctx(c), a) for c, a in d["l"]], kind=SpanKind(d["k"]),
            status=Status(StatusCode(code), desc if code == StatusCode.ERROR.value else None),
            start_time=d["s"], end_time=d["e"],
            instrumentation_scope=InstrumentationScope(scope[0], scope[1], scope[2]) if scope else None,
        )
