"""The redaction transform of the processing chain: a finished span in, a redacted copy out.

Covers the span name, status message, attributes, events (exception messages and stack traces), link
attributes and the resource. An ordinary span passes through as the same object (no copy).
"""

from __future__ import annotations

import logging
import threading

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Link, Status

from ..ratelimit import warn_once_per
from .redactor import Redactor

log = logging.getLogger("pipetrace.redaction")


class RedactionTransform:
    """Callable ``ReadableSpan -> ReadableSpan`` for ``PipelineProcessor``; never raises.

    If redaction itself fails on a span the span is dropped (counted in ``failed``), never passed on
    unredacted: a missing span is a lesser harm than a leaked secret.
    """

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self.failed = 0
        self._resources: dict[int, tuple[Resource, Resource]] = {}
        self._lock = threading.Lock()

    def _resource(self, resource: Resource | None) -> Resource | None:
        if resource is None:
            return None
        entry = self._resources.get(id(resource))
        if entry is not None and entry[0] is resource:
            return entry[1]
        attrs = self.redactor.attributes(resource.attributes)
        redacted = resource if attrs is None else Resource(attrs, resource.schema_url)
        with self._lock:
            if len(self._resources) > 64:
                self._resources.clear()
            self._resources[id(resource)] = (resource, redacted)
        return redacted

    def __call__(self, span: ReadableSpan) -> ReadableSpan | None:
        try:
            return self._redact(span)
        except Exception as exc:
            self.failed += 1
            warn_once_per(log, "redaction", "pipetrace: redaction failed, span dropped: %r", exc)
            return None

    def _redact(self, span: ReadableSpan) -> ReadableSpan:
        r = self.redactor
        changed = False
        name = r.text(span.name)
        changed |= name != span.name
        attrs = r.attributes(span.attributes)
        changed |= attrs is not None
        status = span.status
        if status is not None and status.description:
            desc = r.text(status.description)
            if desc != status.description:
                status = Status(status.status_code, desc)
                changed = True
        events = list(span.events)
        for i, ev in enumerate(events):
            ev_name = r.text(ev.name)
            ev_attrs = r.attributes(ev.attributes)
            if ev_attrs is not None or ev_name != ev.name:
                events[i] = Event(ev_name, ev_attrs if ev_attrs is not None else ev.attributes, ev.timestamp)
                changed = True
        links = list(span.links)
        for i, lk in enumerate(links):
            lk_attrs = r.attributes(lk.attributes)
            if lk_attrs is not None:
                links[i] = Link(lk.context, lk_attrs)
                changed = True
        resource = self._resource(span.resource)
        changed |= resource is not span.resource
        if not changed:
            return span
        return ReadableSpan(
            name=name, context=span.context, parent=span.parent, resource=resource,
            attributes=attrs if attrs is not None else span.attributes, events=events, links=links,
            kind=span.kind, status=status, start_time=span.start_time, end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )
