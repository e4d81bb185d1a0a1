"""Result hand-offs: Prefect links a task run's span to each upstream state it consumes (the state's
``traceparent``); this transform gives those links ``pipetrace.link.kind=result``."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Link
from pipetrace import attributes as A


def mark_result_links(span: ReadableSpan) -> ReadableSpan:
    """Prefect task spans: every link without a kind is a result hand-off."""
    attrs = span.attributes or {}
    if attrs.get(A.SYSTEM) != "prefect" or not span.links:
        return span
    if all(A.LINK_KIND in (lk.attributes or {}) for lk in span.links):
        return span
    links = [lk if A.LINK_KIND in (lk.attributes or {}) else Link(lk.context, {**(lk.attributes or {}),
                                                                               A.LINK_KIND: "result"})
             for lk in span.links]
    return ReadableSpan(
        name=span.name, context=span.context, parent=span.parent, resource=span.resource,
        attributes=span.attributes, events=span.events, links=links, kind=span.kind, status=span.status,
        start_time=span.start_time, end_time=span.end_time, instrumentation_scope=span.instrumentation_scope,
    )
