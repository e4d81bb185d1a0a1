"""SpanRecord: the store's row, built from an SDK ReadableSpan and read back by queries and exports."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

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

    @property
    def system(self) -> str | None:
        value = self.attributes.get(A.SYSTEM)
        return str(value) if value is not None else None

    @property
    def pipeline(self) -> str | None:
        value = self.attributes.get(A.PIPELINE_NAME)
        return str(value) if value is not None else None

    @property
    def run_id(self) -> str | None:
        value = self.attributes.get(A.PIPELINE_RUN_ID)
        return str(value) if value is not None else None

    @property
    def task(self) -> str | None:
        value = self.attributes.get(A.TASK_NAME)
        return str(value) if value is not None else None

    @property
    def result(self) -> str | None:
        value = self.attributes.get(A.PIPELINE_RESULT, self.attributes.get(A.TASK_RESULT))
        return str(value) if value is not None else None

    @property
    def is_run(self) -> bool:
        return self.name.startswith("run ") and A.PIPELINE_RUN_ID in self.attributes and self.kind == "SERVER"

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


def dumps(value: Any) -> str:
    return _encoder.encode(value)
