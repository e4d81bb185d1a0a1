"""The store layer: schema, migrations and every query, over SQLite (embedded default) or PostgreSQL
(``PIPETRACE_STORE=postgresql://…``, the fleet store). Nothing outside this package runs SQL."""

from .exporter import StoreSpanExporter
from .records import SpanRecord, from_readable
from .sqlite import RunSummary, SpanStore, TaskPercentiles, TaskStats

__all__ = ["RunSummary", "SpanRecord", "SpanStore", "StoreSpanExporter", "TaskPercentiles", "TaskStats",
           "from_readable"]
