"""Embedded span store (SQLite, WAL) and its query API."""

from .exporter import StoreSpanExporter
from .records import SpanRecord, from_readable
from .sqlite import RunSummary, SpanStore, TaskStats

__all__ = ["RunSummary", "SpanRecord", "SpanStore", "StoreSpanExporter", "TaskStats", "from_readable"]
