"""The redaction transform of the processing chain: a finished span in, a redacted copy out.

Covers the span name, status message, attributes, events (exception messages and stack traces), link
attributes and the resource. Then, and only then, the length limit: a string longer than
``attribute_value_length_limit`` (``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``, 8 KiB by default) is cut —
after redaction, so a cut can never split a secret from the context its detector needs. Cuts are
counted (``pipetrace.stats()["redaction"]["truncated"]``). An ordinary span passes through as the same
object (no copy).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Link, Status

from ..util.ratelimit import warn_once_per
from .known import KNOWN
from .redactor import CLEAN_LONGEST, Redactor, same_text
from .text import cut

log = logging.getLogger("pipetrace.redaction")


def _public_span_attributes(span: ReadableSpan) -> Mapping[str, Any] | None:
    return span.attributes


def _as_is(attributes: Any) -> Mapping[str, Any] | None:
    return attributes  # type: ignore[no-any-return]


def _differs(new: str, old: str) -> bool:
    """``new`` (redacted) is not ``old``'s text, by :func:`same_text` (a str subclass's own ``__eq__`` that said
    "equal" to anything kept a secret span name unredacted)."""
    return not same_text(new, old)


class RedactionTransform:
    """Callable ``ReadableSpan -> ReadableSpan`` for ``PipelineProcessor``; never raises.

    If redaction itself fails on a span the span is dropped (counted in ``failed``), never passed on
    unredacted: a missing span is a lesser harm than a leaked secret.
    """

    def __init__(self, redactor: Redactor | None, limit: int | None = None, *,
                 span_attributes: Callable[[ReadableSpan], Mapping[str, Any] | None] | None = None,
                 attributes: Callable[[Any], Mapping[str, Any] | None] | None = None) -> None:
        self.redactor = redactor
        # how a span's (an event's, a link's) attributes are read: the public mappings by default; the
        # processing layer passes readers of the plain dicts under the SDK's ``BoundedAttributes`` (a
        # Python walk of those costs ~3.7 µs a span; redaction may not reach into the SDK itself)
        self._span_attributes = span_attributes or _public_span_attributes
        self._read = attributes or _as_is
        self.limit = limit if limit and limit > 0 else None
        # the redactor's clean set decides a mapping or a name only where the limit cannot cut a clean value
        self._fast = redactor is not None and (self.limit is None or self.limit >= CLEAN_LONGEST)
        self.failed = 0
        self.truncated = 0
        self._resources: dict[int, tuple[Resource, int, Resource]] = {}
        self._last: tuple[Resource | None, int, Resource | None] = (None, -1, None)
        self._lock = threading.Lock()

    def _resource(self, resource: Resource | None) -> Resource | None:
        if resource is None:
            return None
        version = KNOWN.version
        last = self._last  # (a process has one resource: the last one's result, without the dict)
        if last[0] is resource and last[1] == version:
            return last[2]
        entry = self._resources.get(id(resource))
        if entry is not None and entry[0] is resource and entry[1] == version:
            self._last = entry
            return entry[2]
        attrs = self._attributes(self._read(resource.attributes))
        redacted = resource if attrs is None else Resource(attrs, resource.schema_url)
        with self._lock:
            if len(self._resources) > 64:
                self._resources.clear()
            self._resources[id(resource)] = (resource, version, redacted)
        return redacted

    def __call__(self, span: ReadableSpan) -> ReadableSpan | None:
        try:
            return self._redact(span)
        except Exception as exc:
            self.failed += 1
            warn_once_per(log, "redaction", "pipetrace: redaction failed, span dropped: %r", exc)
            return None

    def stats(self) -> dict[str, int]:
        return {"truncated": self.truncated, "failed": self.failed, "known_secrets": len(KNOWN)}

    def _text(self, text: str) -> str:
        if self._fast and type(text) is str and text in self.redactor._clean:  # type: ignore[union-attr]
            return text  # (a plain str: its own hash and equality; at most CLEAN_LONGEST characters)
        out = self.redactor.text(text) if self.redactor is not None else text
        if self.limit is not None and len(out) > self.limit:
            self.truncated += 1
            out = cut(out, self.limit)
        return out

    def _limited(self, attrs: Mapping[str, Any]) -> dict[str, Any] | None:
        limit = self.limit
        assert limit is not None
        out: dict[str, Any] | None = None
        for key, value in attrs.items():
            if isinstance(value, str):
                if len(value) <= limit:
                    continue
                new: Any = cut(value, limit)
            elif isinstance(value, (list, tuple)) and any(isinstance(v, str) and len(v) > limit for v in value):
                new = [cut(v, limit) if isinstance(v, str) else v for v in value]
            else:
                continue
            self.truncated += 1
            if out is None:
                out = dict(attrs)
            out[key] = new
        return out

    def _attributes(self, attrs: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """Redacted, then length-limited copy of ``attrs``; None when nothing changed."""
        if not attrs:
            return None
        if self._fast and self.redactor._unchanged(attrs):  # type: ignore[union-attr]
            return None  # (no value is long: the limit has nothing to cut)
        if self.redactor is not None:  # the key-by-key walk: the clean set's check is not repeated
            out, long = self.redactor._walk(attrs, self.limit)
        else:
            out, long = None, True
        if long and self.limit is not None:  # a changed value may have grown (a token): checked too
            limited = self._limited(out if out is not None else attrs)
            if limited is not None:
                out = limited
        return out

    def _redact(self, span: ReadableSpan) -> ReadableSpan:
        r = self.redactor
        if r is not None:
            r.refresh()
        attrs = self._attributes(self._span_attributes(span))  # first: values under sensitive keys become known…
        if r is not None and r.stale():
            r.refresh()  # …and are masked in the name, events and status below
        changed = attrs is not None
        raw_name = span.name  # (each read of a ReadableSpan's or an Event's field is a Python property call)
        name = self._text(raw_name)
        changed |= name is not raw_name and _differs(name, raw_name)
        status = span.status
        if status is not None and status.description:
            raw_desc = status.description
            desc = self._text(raw_desc)
            if desc is not raw_desc and _differs(desc, raw_desc):
                status = Status(status.status_code, desc)
                changed = True
        events: Sequence[Event] = span.events  # read once: the SDK's property copies them each time
        if events:
            redacted = self._events(events)
            changed |= redacted is not events
            events = redacted
        links: Sequence[Link] = span.links
        if links:
            kept = self._links(links)
            changed |= kept is not links
            links = kept
        raw_resource = span.resource
        resource = self._resource(raw_resource)
        changed |= resource is not raw_resource
        if not changed:
            return span
        return ReadableSpan(
            name=name, context=span.context, parent=span.parent, resource=resource,
            attributes=attrs if attrs is not None else span.attributes, events=list(events or ()),
            links=list(links or ()), kind=span.kind, status=status, start_time=span.start_time,
            end_time=span.end_time, instrumentation_scope=span.instrumentation_scope,
        )

    def _events(self, events: Sequence[Event]) -> Sequence[Event]:
        """``events`` redacted: the same sequence when nothing changed, else a list with new events."""
        out: list[Event] | None = None
        for i, ev in enumerate(events):
            raw_name = ev.name
            ev_name = self._text(raw_name)
            ev_attrs = self._attributes(self._read(ev.attributes))
            if ev_attrs is not None or (ev_name is not raw_name and _differs(ev_name, raw_name)):
                if out is None:
                    out = list(events)
                out[i] = Event(ev_name, ev_attrs if ev_attrs is not None else ev.attributes, ev.timestamp)
        return events if out is None else out

    def _links(self, links: Sequence[Link]) -> Sequence[Link]:
        """``links`` redacted: the same sequence when nothing changed, else a list with new links."""
        out: list[Link] | None = None
        for i, lk in enumerate(links):
            lk_attrs = self._attributes(self._read(lk.attributes))
            if lk_attrs is not None:
                if out is None:
                    out = list(links)
                out[i] = Link(lk.context, lk_attrs)
        return links if out is None else out
