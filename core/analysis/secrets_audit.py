"""Secrets audit: scan stored spans with the redaction detectors, report where a secret sits, mask in place.

For data written with redaction off, under older rules, or before a value became a known secret. Each
finding names the trace, the span and the field (``name``, ``status_message``, ``attributes.<key>``,
``events[i].name``, ``events[i].attributes.<key>``, ``links[i].attributes.<key>``, ``resource.<key>``)
and the detector — never the value. ``mask`` rewrites the affected rows with the values masked, with
SQLite's ``secure_delete`` on and the WAL checkpointed and truncated afterwards, so the old bytes are
overwritten in the file rather than left in free pages or the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..redaction import detectors as D
from ..redaction.redactor import DROP, MASK, Redactor
from ..store import SpanRecord, SpanStore
from ..store import maintenance as M
from .findings import FindingsReport

log = logging.getLogger("pipetrace.audit")


@dataclass(frozen=True)
class SecretFinding:
    trace_id: str
    span_id: str
    span_name: str  # as it would be shown after masking
    field: str
    detector: str
    pipeline: str | None = None
    run_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"trace_id": self.trace_id, "span_id": self.span_id, "span": self.span_name, "field": self.field,
                "detector": self.detector, "pipeline": self.pipeline, "run_id": self.run_id}


@dataclass
class SecretsAuditReport(FindingsReport[SecretFinding]):
    masked_spans: int = 0
    tally_field: ClassVar[str] = "detector"
    tally_key: ClassVar[str] = "by_detector"

    def by_detector(self) -> dict[str, int]:
        return self.tally()

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "masked_spans": self.masked_spans}


def _detector(value: str) -> str:
    found = D.find(value)
    return found[0].detector if found else D.KNOWN_DETECTOR


class _Scanner:
    """Masks one record's fields with ``redactor`` and records a finding per changed field."""

    def __init__(self, redactor: Redactor, rec: SpanRecord) -> None:
        self.r = redactor
        self.rec = rec
        self.found: list[tuple[str, str]] = []  # (field, detector)

    def text(self, where: str, value: str | None) -> str | None:
        if not value:
            return value
        out = self.r.text(value)
        if out != value:
            self.found.append((where, _detector(value)))
        return out

    def attrs(self, where: str, attrs: Mapping[str, Any]) -> dict[str, Any]:
        if not attrs:
            return dict(attrs or {})
        redacted = self.r.attributes(attrs)
        if redacted is None:
            return dict(attrs)
        for key, value in attrs.items():
            new = redacted.get(key, DROP)
            if new == value:
                continue
            if self.r._key_class(key) == 1:  # noqa: SLF001 - same rule as the redaction pass
                detector = D.KEY_DETECTOR
            elif isinstance(value, str):
                detector = _detector(value)
            else:
                detector = D.KNOWN_DETECTOR
            self.found.append((f"{where}.{key}" if where else key, detector))
        return redacted

    def masked(self) -> SpanRecord:
        rec = self.rec
        attributes = self.attrs("attributes", rec.attributes)
        name = self.text("name", rec.name) or rec.name
        status = self.text("status_message", rec.status_message)
        events = [{**ev, "name": self.text(f"events[{i}].name", ev.get("name")) or "",
                   "attributes": self.attrs(f"events[{i}].attributes", ev.get("attributes") or {})}
                  for i, ev in enumerate(rec.events)]
        links = [{**lk, "attributes": self.attrs(f"links[{i}].attributes", lk.get("attributes") or {})}
                 for i, lk in enumerate(rec.links)]
        resource = self.attrs("resource", rec.resource)
        return SpanRecord(
            trace_id=rec.trace_id, span_id=rec.span_id, parent_span_id=rec.parent_span_id, name=name, kind=rec.kind,
            start_ns=rec.start_ns, end_ns=rec.end_ns, status=rec.status, status_message=status,
            attributes=attributes, events=events, links=links, resource=resource, scope=rec.scope)


def _trace_ids(store: SpanStore, since_ns: int | None) -> Iterator[str]:
    if since_ns is None:
        for rows in M.iter_structure(store):
            yield rows[0][0]
        return
    rows = store._query("SELECT DISTINCT trace_id FROM spans WHERE end_ns>=?", (since_ns,))  # noqa: SLF001
    yield from (row[0] for row in rows)


def rewrite_spans(store: SpanStore, records: list[SpanRecord]) -> int:
    """Overwrite stored rows (same trace and span id) with ``records`` so no old byte remains readable:
    ``secure_delete`` zeroes the freed cells, a TRUNCATE checkpoint empties the WAL."""
    if not records:
        return 0
    store._query("PRAGMA secure_delete=ON")  # noqa: SLF001 - per connection; the store keeps one
    try:
        written = store.write(records)
    finally:
        store._query("PRAGMA secure_delete=OFF")  # noqa: SLF001
    try:
        store._query("PRAGMA wal_checkpoint(TRUNCATE)")  # noqa: SLF001
    except Exception as exc:  # a reader holding the WAL: the next checkpoint clears it
        log.warning("pipetrace: WAL not truncated after masking (%r); it will be at the next checkpoint", exc)
    return written


def audit_secrets(store: SpanStore, *, redactor: Redactor | None = None, mask: bool = False,
                  since_ns: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> SecretsAuditReport:
    """Scan every stored span (or those of traces with a task since ``since_ns``) for secrets.

    ``redactor``: default masks with every detector plus the process's known secrets. With ``mask``,
    each span with a finding is rewritten masked (``rewrite_spans``)."""
    redactor = redactor or Redactor()
    redactor.refresh()
    report = SecretsAuditReport()
    total = M.trace_count(store) if progress is not None else 0
    pending: list[SpanRecord] = []
    for trace_id in list(_trace_ids(store, since_ns)):
        report.traces += 1
        for rec in store.trace(trace_id):
            report.spans += 1
            scan = _Scanner(redactor, rec)
            masked = scan.masked()
            if not scan.found:
                continue
            report.findings.extend(
                SecretFinding(rec.trace_id, rec.span_id, masked.name, where, detector, rec.pipeline, rec.run_id)
                for where, detector in scan.found)
            if mask:
                pending.append(masked)
        if len(pending) >= 500:
            report.masked_spans += rewrite_spans(store, pending)
            pending = []
        if progress is not None:
            progress(report.traces, total)
    report.masked_spans += rewrite_spans(store, pending)
    return report


__all__ = ["MASK", "SecretFinding", "SecretsAuditReport", "audit_secrets", "rewrite_spans"]
