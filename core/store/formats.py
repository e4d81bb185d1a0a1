"""A stored trace as OTLP JSON (the collector's file format) or Jaeger JSON (Jaeger UI "JSON File")."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from .records import SpanRecord

_OTLP_KIND = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}
_OTLP_STATUS = {"UNSET": 0, "OK": 1, "ERROR": 2}


def _any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_any_value(v) for v in value]}}
    return {"stringValue": str(value)}


def _kvs(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _any_value(v)} for k, v in attrs.items()]


def to_otlp_json(spans: Sequence[SpanRecord]) -> dict[str, Any]:
    """OTLP/JSON ``ExportTraceServiceRequest`` (hex ids, as the OTLP JSON encoding requires)."""
    by_resource: dict[str, tuple[dict[str, Any], dict[str, list[SpanRecord]]]] = {}
    for span in spans:
        key = repr(sorted(span.resource.items()))
        entry = by_resource.setdefault(key, (span.resource, {}))
        entry[1].setdefault(span.scope, []).append(span)
    resource_spans = []
    for resource, scopes in by_resource.values():
        resource_spans.append({
            "resource": {"attributes": _kvs(resource)},
            "scopeSpans": [{
                "scope": {"name": scope},
                "spans": [{
                    "traceId": s.trace_id, "spanId": s.span_id, "parentSpanId": s.parent_span_id or "",
                    "name": s.name, "kind": _OTLP_KIND.get(s.kind, 1),
                    "startTimeUnixNano": str(s.start_ns), "endTimeUnixNano": str(s.end_ns),
                    "attributes": _kvs(s.attributes),
                    "events": [{"timeUnixNano": str(e["time_ns"]), "name": e["name"],
                                "attributes": _kvs(e.get("attributes", {}))} for e in s.events],
                    "links": [{"traceId": lk["trace_id"], "spanId": lk["span_id"],
                               "attributes": _kvs(lk.get("attributes", {}))} for lk in s.links],
                    "status": {"code": _OTLP_STATUS.get(s.status, 0), "message": s.status_message or ""},
                } for s in scoped],
            } for scope, scoped in scopes.items()],
        })
    return {"resourceSpans": resource_spans}


_KIND_NAME = {v: k for k, v in _OTLP_KIND.items()}
_STATUS_NAME = {v: k for k, v in _OTLP_STATUS.items()}


def _from_any(value: dict[str, Any]) -> Any:
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [_from_any(v) for v in value["arrayValue"].get("values", [])]
    return value.get("stringValue", "")


def _from_kvs(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {kv["key"]: _from_any(kv.get("value", {})) for kv in items}


def from_otlp_json(doc: dict[str, Any]) -> list[SpanRecord]:
    """The spans of an OTLP/JSON ``ExportTraceServiceRequest`` as written by :func:`to_otlp_json` (used to
    restore archives)."""
    out: list[SpanRecord] = []
    for rs in doc.get("resourceSpans", []):
        resource = _from_kvs(rs.get("resource", {}).get("attributes", []))
        for ss in rs.get("scopeSpans", []):
            scope = ss.get("scope", {}).get("name", "")
            for s in ss.get("spans", []):
                status = s.get("status", {})
                out.append(SpanRecord(
                    trace_id=s["traceId"], span_id=s["spanId"], parent_span_id=s.get("parentSpanId") or None,
                    name=s["name"], kind=_KIND_NAME.get(int(s.get("kind", 1)), "INTERNAL"),
                    start_ns=int(s["startTimeUnixNano"]), end_ns=int(s["endTimeUnixNano"]),
                    status=_STATUS_NAME.get(int(status.get("code", 0)), "UNSET"),
                    status_message=status.get("message") or None,
                    attributes=_from_kvs(s.get("attributes", [])),
                    events=[{"name": e["name"], "time_ns": int(e["timeUnixNano"]),
                             "attributes": _from_kvs(e.get("attributes", []))} for e in s.get("events", [])],
                    links=[{"trace_id": lk["traceId"], "span_id": lk["spanId"],
                            "attributes": _from_kvs(lk.get("attributes", []))} for lk in s.get("links", [])],
                    resource=resource, scope=scope))
    return out


def _tag(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        return {"key": key, "type": "int64", "value": value}
    if isinstance(value, float):
        return {"key": key, "type": "float64", "value": value}
    return {"key": key, "type": "string", "value": value if isinstance(value, str) else str(value)}


def to_jaeger_json(spans: Sequence[SpanRecord]) -> dict[str, Any]:
    """Jaeger query-API JSON: ``{"data": [{traceID, spans, processes}]}`` per trace."""
    traces: dict[str, list[SpanRecord]] = {}
    for span in spans:
        traces.setdefault(span.trace_id, []).append(span)
    data = []
    for trace_id, members in traces.items():
        processes: dict[str, dict[str, Any]] = {}
        process_ids: dict[str, str] = {}
        out = []
        for s in members:
            pkey = repr(sorted(s.resource.items()))
            if pkey not in process_ids:
                pid = f"p{len(process_ids) + 1}"
                process_ids[pkey] = pid
                processes[pid] = {
                    "serviceName": str(s.resource.get("service.name", "pipetrace")),
                    "tags": [_tag(k, v) for k, v in s.resource.items() if k != "service.name"],
                }
            refs = []
            if s.parent_span_id:
                refs.append({"refType": "CHILD_OF", "traceID": s.trace_id, "spanID": s.parent_span_id})
            refs.extend({"refType": "FOLLOWS_FROM", "traceID": lk["trace_id"], "spanID": lk["span_id"]}
                        for lk in s.links)
            tags = [_tag(k, v) for k, v in s.attributes.items()]
            tags.append(_tag("span.kind", s.kind.lower()))
            if s.status == "ERROR":
                tags.append(_tag("error", True))
                if s.status_message:
                    tags.append(_tag("otel.status_description", s.status_message))
            out.append({
                "traceID": s.trace_id, "spanID": s.span_id, "operationName": s.name, "references": refs,
                "startTime": s.start_ns // 1000, "duration": max(0, s.end_ns - s.start_ns) // 1000,
                "tags": tags,
                "logs": [{"timestamp": e["time_ns"] // 1000,
                          "fields": [_tag("event", e["name"])] + [_tag(k, v) for k, v in
                                                                  e.get("attributes", {}).items()]}
                         for e in s.events],
                "processID": process_ids[pkey], "warnings": None,
            })
        data.append({"traceID": trace_id, "spans": out, "processes": processes, "warnings": None})
    return {"data": data, "total": 0, "limit": 0, "offset": 0, "errors": None}


def b64_id(hex_id: str) -> str:
    """OTLP protobuf-JSON mapping (base64) of a hex id, for tools that want it."""
    return base64.b64encode(bytes.fromhex(hex_id)).decode()
