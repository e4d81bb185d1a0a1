"""Spans lost on the way, counted by cause: the one tally ``pipetrace.stats()["lost"]`` and ``doctor`` show.

Why: a span can be lost in several places — an export queue that is full, an exporter that fails, the
flush bound at shutdown, a span handle whose SDK record could not be made, work on the background
"later" thread that failed, a transform (redaction) that raised. Each place logs once a minute; without
one count per cause nobody can tell afterwards how many spans a process lost, or why.

A cause is a short name; an exporter's own causes are ``<cause>.<exporter>`` (one span may be lost for
one exporter and still reach another). Adding a cause is one :func:`count` call where the span is lost,
plus one line in :data:`CAUSES` saying what it means.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

CAUSES: dict[str, str] = {
    "queue_full": "an export queue was full (the exporter falls behind)",
    "exporter_error": "the exporter failed and the batch was not kept for a retry",
    "shutdown": "still queued or exporting when the flush bound ran out at shutdown",
    "transform_error": "a span transform (redaction, …) raised: the span is dropped rather than leaked",
    "span_record": "a span handle could not make its SDK record at the span's end",
    "span_build": "a lazy span handle could not be built",
    "later_work": "work handed to the background 'later' thread failed",
    "span_start": "a span helper could not start or record a span (the body ran untraced)",
    "store_buffer_full": "the PostgreSQL store was unreachable and the local buffer was full or unwritable",
}
"""Every cause, with what it means (``doctor`` prints the meaning next to a non-zero count)."""

_lock = threading.Lock()
_counts: Counter[str] = Counter()


def count(cause: str, n: int = 1, exporter: str | None = None) -> None:
    """Count ``n`` spans lost for ``cause`` (of one ``exporter``, when the loss is that exporter's)."""
    if n <= 0:
        return
    key = f"{cause}.{exporter}" if exporter else cause
    with _lock:
        _counts[key] += n


def uncount(cause: str, n: int, exporter: str | None = None) -> None:
    """Take back spans counted lost that were delivered after all (an export that finished after
    shutdown had counted it lost)."""
    key = f"{cause}.{exporter}" if exporter else cause
    with _lock:
        _counts[key] = max(0, _counts[key] - n)


def snapshot() -> dict[str, int]:
    """Non-zero counts by cause (``<cause>.<exporter>`` for an exporter's own)."""
    with _lock:
        return {key: value for key, value in sorted(_counts.items()) if value}


def meaning(key: str) -> str:
    return CAUSES.get(key.split(".", 1)[0], "")


def reset() -> None:
    with _lock:
        _counts.clear()


def _after_fork() -> None:
    global _lock, _counts
    _lock = threading.Lock()  # new, not taken: another thread may have held the old one at the fork
    _counts = Counter()


if hasattr(os, "register_at_fork"):  # a forked child counts its own losses
    os.register_at_fork(after_in_child=_after_fork)
