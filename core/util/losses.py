"""Spans lost on the way, counted by cause: the one tally ``pipetrace.stats()["lost"]`` and ``doctor`` show.

Why: a span can be lost in several places — an export queue that is full, an exporter that fails, the
flush bound at shutdown, a span handle whose SDK record could not be made, work on the background
"later" thread that failed, a transform (redaction) that raised. Each place logs once a minute; without
one count per cause nobody can tell afterwards how many spans a process lost, or why.

A cause is a short name; an exporter's own causes are ``<cause>.<exporter>`` (one span may be lost for
one exporter and still reach another). Adding a cause is one :func:`count` call where the span is lost,
plus one line in :data:`CAUSES` saying what it means.

The counts also go to a journal, one small JSON file per process under ``<home>/losses/`` (written a few
seconds after a loss and at exit, never on the hot path), because ``pipetrace doctor`` runs in its own
process: it sums the journal of every process of the home (:func:`recorded`).
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

CAUSES: dict[str, str] = {
    "queue_full": "an export queue was full (the exporter falls behind)",
    "exporter_error": "the exporter failed and the batch was not kept for a retry",
    "shutdown": "still queued or exporting when the flush bound ran out at shutdown",
    "transform_error": "a span transform (redaction, …) raised: the span is dropped rather than leaked",
    "span_record": "a span handle could not make its SDK record at the span's end",
    "span_build": "a lazy span handle could not be built (pipetrace before its removal; read in older journals)",
    "span_start": "a span helper could not start or record a span (the body ran untraced)",
    "store_buffer_full": "the PostgreSQL store was unreachable and the local buffer was full or unwritable",
}
"""Every cause, with what it means (``doctor`` prints the meaning next to a non-zero count)."""

_lock = threading.Lock()
_counts: Counter[str] = Counter()


JOURNAL_DELAY_S = 2.0
"""Losses are written to the journal this long after the first unwritten one (one write per burst)."""

_journal_dir: Path | None = None
_journal_timer: threading.Timer | None = None
_journal_dirty = False
_started_ns = time.time_ns()


def count(cause: str, n: int = 1, exporter: str | None = None) -> None:
    """Count ``n`` spans lost for ``cause`` (of one ``exporter``, when the loss is that exporter's)."""
    if n <= 0:
        return
    key = f"{cause}.{exporter}" if exporter else cause
    with _lock:
        _counts[key] += n
    _schedule_journal()


def uncount(cause: str, n: int, exporter: str | None = None) -> None:
    """Take back spans counted lost that were delivered after all (an export that finished after
    shutdown had counted it lost)."""
    key = f"{cause}.{exporter}" if exporter else cause
    with _lock:
        _counts[key] = max(0, _counts[key] - n)
    _schedule_journal()


def snapshot() -> dict[str, int]:
    """Non-zero counts by cause (``<cause>.<exporter>`` for an exporter's own)."""
    with _lock:
        return {key: value for key, value in sorted(_counts.items()) if value}


def meaning(key: str) -> str:
    return CAUSES.get(key.split(".", 1)[0], "")


def reset() -> None:
    with _lock:
        _counts.clear()


def journal_to(home: Path | None) -> None:
    """Write this process's counts under ``home/losses/`` from now on (None: stop). Called by configure."""
    global _journal_dir
    _journal_dir = Path(home) / "losses" if home is not None else None
    if _journal_dir is not None:
        _prune(_journal_dir, time.time() - JOURNAL_KEEP_S)
        if snapshot():
            _schedule_journal()


JOURNAL_KEEP_S = 30 * 86_400
"""Journal files of processes whose last loss is older than this are removed (at configure)."""


def _prune(directory: Path, before: float) -> None:
    try:
        for path in directory.glob("*.json"):
            if path.stat().st_mtime < before:
                path.unlink(missing_ok=True)
    except OSError:
        pass


def _journal_path(directory: Path) -> Path:
    return directory / f"{socket.gethostname()}-{os.getpid()}-{_started_ns}.json"


def _schedule_journal() -> None:
    """Arm one timer for the burst (a daemon thread that writes once): the hot path only sets a flag."""
    global _journal_timer, _journal_dirty
    if _journal_dir is None:
        return
    with _lock:
        _journal_dirty = True
        if _journal_timer is not None:
            return
        timer = threading.Timer(JOURNAL_DELAY_S, write_journal)
        timer.daemon = True
        _journal_timer = timer
    try:
        timer.start()
    except RuntimeError:  # interpreter shutting down: the atexit write covers it
        pass


def write_journal() -> None:
    """Write this process's counts to its journal file now (atomically; never raises)."""
    global _journal_timer, _journal_dirty
    with _lock:
        _journal_timer = None
        directory, dirty, counts = _journal_dir, _journal_dirty, {k: v for k, v in _counts.items() if v}
        _journal_dirty = False
    if directory is None or not dirty:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path = _journal_path(directory)
        record = {"host": socket.gethostname(), "pid": os.getpid(), "started_ns": _started_ns,
                  "updated_ns": time.time_ns(), "lost": counts}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)
    except OSError:  # an unwritable home: the in-process count (stats()) still holds
        pass


@dataclass(frozen=True)
class Recorded:
    """The journal of one home summed: lost spans by cause, from how many processes, the last loss."""

    lost: dict[str, int]
    processes: int
    last_ns: int


def recorded(home: Path, since_ns: int = 0) -> Recorded:
    """Sum every process's journal under ``home/losses/`` updated at or after ``since_ns``."""
    total: Counter[str] = Counter()
    processes, last = 0, 0
    directory = Path(home) / "losses"
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            record = json.loads(path.read_text())
            updated = int(record.get("updated_ns", 0))
            lost = {str(k): int(v) for k, v in dict(record.get("lost", {})).items() if int(v) > 0}
        except (OSError, ValueError, TypeError, AttributeError):
            continue  # a half-written or foreign file is not a finding
        if updated < since_ns or not lost:
            continue
        total.update(lost)
        processes += 1
        last = max(last, updated)
    return Recorded(dict(sorted(total.items())), processes, last)


def _after_fork() -> None:
    global _lock, _counts, _journal_timer, _journal_dirty, _started_ns
    _lock = threading.Lock()  # new, not taken: another thread may have held the old one at the fork
    _counts = Counter()
    _journal_timer, _journal_dirty = None, False  # the parent's timer thread did not survive the fork
    _started_ns = time.time_ns()


atexit.register(write_journal)


if hasattr(os, "register_at_fork"):  # a forked child counts its own losses
    os.register_at_fork(after_in_child=_after_fork)
