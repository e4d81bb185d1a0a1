"""``pipetrace report``: one run as a self-contained HTML file (data, scripts and styles inside)."""

from __future__ import annotations

from .. import __version__
from ..store import SpanStore
from ..store.formats import to_jaeger_json, to_otlp_json
from . import page, payload


def build_report(store: SpanStore, ident: str) -> str | None:
    """The report's HTML for a trace id or run id; None if the store has no such trace."""
    doc = payload.trace_document(store, ident, with_history=True)
    if doc is None:
        return None
    spans = store.trace(doc["trace_id"])
    exports = {"otlp-json": to_otlp_json(spans), "jaeger-json": to_jaeger_json(spans)}
    return page.report_page(doc, exports, __version__)
