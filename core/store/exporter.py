"""SpanExporter writing to the embedded store (runs on the export queue's thread, never the task's)."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ..util.gil import YIELD_EVERY, hand_back
from ..util.ratelimit import warn_once_per
from .buffer import BufferedWriter
from .records import readable_row
from .sqlite import SpanStore, is_corruption

log = logging.getLogger("pipetrace.store")


def _rows(spans: Sequence[ReadableSpan], row: Callable[[ReadableSpan], tuple[Any, ...]] = readable_row
          ) -> list[tuple[Any, ...]]:
    out = []
    since = time.perf_counter()
    for n, span in enumerate(spans, 1):
        if n % YIELD_EVERY == 0:
            since = hand_back(since)  # let the task's thread have the GIL
        out.append(row(span))
    return out


class StoreSpanExporter(SpanExporter):
    """Writes to the store; with a PostgreSQL store, through a local buffer (see ``buffer.py``).

    ``span_attributes``/``attributes``: how rows read a span's (an event's, a link's) attributes (see
    ``records.readable_row``); the processing layer passes the SDK's plain dicts, read without a copy."""

    def __init__(self, store: SpanStore, *, span_attributes: Callable[[ReadableSpan], Mapping[str, Any]] | None = None,
                 attributes: Callable[[Any], Mapping[str, Any]] | None = None) -> None:
        self.store = store
        self.buffered: BufferedWriter | None = BufferedWriter(store) if store.dialect != "sqlite" else None
        readers: dict[str, Any] = {}
        if span_attributes is not None:
            readers["span_attributes"] = span_attributes
        if attributes is not None:
            readers["attributes"] = attributes
        self._row: Callable[[ReadableSpan], tuple[Any, ...]] = (
            functools.partial(readable_row, **readers) if readers else readable_row)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            rows = _rows(spans, self._row)
            if self.buffered is not None:
                self.buffered.write_rows(rows)
            else:
                self.store.write_rows(rows)
            return SpanExportResult.SUCCESS
        except Exception as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                warn_once_per(log, "store-locked", "pipetrace: the store %s is locked by another process (%s); "
                              "keeping %d spans in memory and retrying", self.store.path, exc, len(spans),
                              interval=30.0)
            else:
                warn_once_per(log, "store-write", "pipetrace: cannot write spans to %s: %r", self.store.path, exc)
            if is_corruption(exc):
                self.store.quarantine(exc)
            self.store.close()  # reconnect next time: the condition (disk full, lock) may pass
            return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        if self.buffered is not None:
            self.buffered.flush()
        self.store.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """With a PostgreSQL store, also drain the local buffer if the server answers (True either way:
        buffered spans are safe on disk and leave with a later export)."""
        if self.buffered is not None:
            self.buffered.flush()
        return True
