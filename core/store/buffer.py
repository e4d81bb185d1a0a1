"""Keep the PostgreSQL store off the task's path: spans it cannot take wait in a local SQLite file.

The export thread writes to PostgreSQL; if the server is down, slow (statement timeout) or full, the
batch goes to ``$PIPETRACE_HOME/buffer.db`` instead and later batches skip the server for a short,
growing pause. When a write succeeds again the buffer is drained to the server in chunks (the upsert is
idempotent, so a chunk sent twice by two processes sharing the buffer is still one row per span).
Nothing is lost up to ``max_spans`` buffered; beyond it spans are dropped, counted and logged once.
Drops are counted twice: per process for ``pipetrace.stats()`` (:func:`stats`), and in the buffer file
itself (:func:`drops_recorded`), so ``pipetrace doctor``, another process, still sees them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..util import losses
from ..util.ratelimit import warn_once_per
from .backend import SPAN_COLUMNS
from .sqlite import SpanStore

log = logging.getLogger("pipetrace.store")

DEFAULT_MAX_SPANS = 1_000_000
DRAIN_CHUNK = 5_000
MAX_PAUSE_S = 5.0
# longer than the server's own statement timeout (postgres.WRITE_TIMEOUT, 30 s): only cuts a write to a
# server that cannot time it out itself (frozen, or a network that drops packets without a reset)
DEFAULT_WRITE_DEADLINE_S = 40.0
_DROPS_TABLE = ("CREATE TABLE IF NOT EXISTS buffer_drops (id INTEGER PRIMARY KEY CHECK (id = 1), "
                "dropped INTEGER NOT NULL, last_ns INTEGER NOT NULL)")
_LIVE: weakref.WeakSet[BufferedWriter] = weakref.WeakSet()  # this process's writers, for stats()


def max_spans_from_env() -> int:
    try:
        return max(0, int(os.environ.get("PIPETRACE_STORE_BUFFER_MAX", DEFAULT_MAX_SPANS)))
    except ValueError:
        return DEFAULT_MAX_SPANS


def write_deadline_from_env() -> float:
    try:
        return max(0.5, float(os.environ.get("PIPETRACE_STORE_WRITE_DEADLINE", DEFAULT_WRITE_DEADLINE_S)))
    except ValueError:
        return DEFAULT_WRITE_DEADLINE_S


class BufferedWriter:
    """Writes span rows to ``store`` (PostgreSQL), falling back to a local SQLite buffer."""

    def __init__(self, store: SpanStore, *, max_spans: int | None = None) -> None:
        self.store = store
        self.max_spans = max_spans_from_env() if max_spans is None else max_spans
        self.deadline_s = write_deadline_from_env()
        self.buffer = SpanStore.local(store.buffer_path)
        self.dropped = 0
        self.buffered = 0
        self.drained = 0
        self._pause_s = 0.0
        self._retry_at = 0.0
        self._pending: int | None = None  # rows in the buffer file (None: not counted yet)
        self._lock = threading.Lock()
        self._drainer: threading.Thread | None = None
        _LIVE.add(self)

    # ---- writing --------------------------------------------------------------------------------------
    def write_rows(self, rows: Sequence[tuple[Any, ...]]) -> None:
        with self._lock:
            # while the buffer is full, every batch tries the server: the alternative is dropping it
            if time.monotonic() >= self._retry_at or self._count() >= self.max_spans:
                try:
                    self._server_write(rows)
                    self._healthy()
                    self._drain()
                    return
                except Exception as exc:  # noqa: BLE001 - any failure: the buffer takes the batch
                    self._unhealthy(exc)
            self._to_buffer(rows)

    def _server_write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Write to the server, but cut the connection past the deadline: a server that stopped answering
        must not hold the export thread (and the spans behind it in memory) for ever."""
        interrupt = getattr(self.store.backend, "interrupt", None)
        timer = threading.Timer(self.deadline_s, interrupt) if interrupt is not None else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            self.store.backend.write_spans(rows)
        finally:
            if timer is not None:
                timer.cancel()

    def flush(self) -> bool:
        """Drain the buffer now if the server answers; True when nothing is left waiting."""
        with self._lock:
            if not self._count():
                return True
            try:
                self._drain()
            except Exception as exc:  # noqa: BLE001
                self._unhealthy(exc)
            return not self._count()

    def _start_drainer(self) -> None:
        """A daemon thread retries the server while spans wait, so they leave even if no new span comes."""
        if self._drainer is not None and self._drainer.is_alive():
            return
        self._drainer = threading.Thread(target=self._drain_loop, name="pipetrace-store-buffer", daemon=True)
        self._drainer.start()

    def _drain_loop(self) -> None:
        while True:
            time.sleep(max(0.25, self._retry_at - time.monotonic()))
            try:
                if self.flush():
                    return
            except Exception as exc:  # noqa: BLE001 - the buffer file itself failed; try again later
                log.debug("pipetrace: buffer drain failed: %r", exc)

    def _healthy(self) -> None:
        if self._pause_s:
            log.warning("pipetrace: store %s reachable again (%d spans dropped while it was not)",
                        self.store.describe(), self.dropped)
        self._pause_s = 0.0
        self._retry_at = 0.0

    def _unhealthy(self, exc: BaseException) -> None:
        self._pause_s = min(MAX_PAUSE_S, max(0.25, self._pause_s * 2))
        self._retry_at = time.monotonic() + self._pause_s
        self.store.close()
        log.debug("pipetrace: store write failed: %r", exc)
        warn_once_per(log, "store-buffer", "pipetrace: cannot write spans to %s (%s); buffering them in %s "
                      "(up to %d spans) until it answers", self.store.describe(), exc, self.buffer.path,
                      self.max_spans)

    def _count(self) -> int:
        if self._pending is None:
            self._pending = self.buffer.count() if self.buffer.path.exists() else 0
        return self._pending

    def _to_buffer(self, rows: Sequence[tuple[Any, ...]]) -> None:
        room = max(0, self.max_spans - self._count())
        keep, lost = rows[:room], len(rows) - min(room, len(rows))
        if keep:
            try:
                self.buffer.backend.write_spans(keep)
            except Exception as exc:  # noqa: BLE001 - the local disk failed too: these spans are lost
                warn_once_per(log, "store-buffer-write", "pipetrace: cannot write to the span buffer %s either "
                              "(%s); dropping spans (counted)", self.buffer.path, exc)
                self._pending = None
                self._dropped(len(keep))
            else:
                self._pending = self._count() + len(keep)
                self.buffered += len(keep)
                self._start_drainer()
        if lost:
            if not self.dropped:
                log.warning("pipetrace: the store buffer %s is full (%d spans); dropping spans until %s "
                            "answers (counted; the total is logged when it does)", self.buffer.path,
                            self.max_spans, self.store.describe())
            self._dropped(lost)

    def _dropped(self, n: int) -> None:
        """Count ``n`` lost spans here and in the buffer file (best effort: that file may be what failed)."""
        self.dropped += n
        losses.count("store_buffer_full", n)
        try:
            self.buffer.backend.run(lambda c: (c.execute(_DROPS_TABLE), c.execute(
                "INSERT INTO buffer_drops (id, dropped, last_ns) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE "
                "SET dropped = dropped + excluded.dropped, last_ns = excluded.last_ns", (n, time.time_ns()))),
                write=True)
        except Exception as exc:  # noqa: BLE001
            log.debug("pipetrace: cannot record %d dropped spans in %s: %r", n, self.buffer.path, exc)

    def _drain(self) -> None:
        """Move buffered spans to the server, chunk by chunk (each chunk deleted once written)."""
        if not self._count():
            return
        cols = ", ".join(SPAN_COLUMNS)
        while True:
            rows = self.buffer._query(f"SELECT {cols} FROM spans ORDER BY start_ns LIMIT ?",  # noqa: SLF001
                                      (DRAIN_CHUNK,))
            if not rows:
                self._pending = 0
                return
            self._server_write(rows)
            keys = [(r[0], r[1]) for r in rows]
            self.buffer.backend.run(lambda c, k=keys: c.executemany(  # type: ignore[misc]
                "DELETE FROM spans WHERE trace_id=? AND span_id=?", k), write=True)
            self.drained += len(rows)
            self._pending = None
            if len(rows) < DRAIN_CHUNK:
                self._pending = self._count()
                if not self._pending:
                    log.info("pipetrace: drained the span buffer %s to %s", self.buffer.path,
                             self.store.describe())
                    return


def stats() -> dict[str, int]:
    """This process's buffer counters (empty without a PostgreSQL store): spans ``buffered`` to the local
    file, ``drained`` from it to the server, ``dropped`` because the buffer was full or unwritable."""
    writers = list(_LIVE)
    if not writers:
        return {}
    return {k: sum(getattr(w, k) for w in writers) for k in ("buffered", "drained", "dropped")}


def drops_recorded(buffer_path: Path) -> tuple[int, int]:
    """(spans dropped, time of the last drop in ns) as recorded in the buffer file by every process of
    this home; (0, 0) when none were."""
    if not Path(buffer_path).exists():
        return 0, 0
    store = SpanStore.local(buffer_path)
    try:
        rows = store.backend.run(lambda c: c.execute(
            "SELECT dropped, last_ns FROM buffer_drops WHERE id = 1").fetchall())
    except Exception:  # noqa: BLE001 - no table: nothing was ever dropped
        return 0, 0
    finally:
        store.close()
    return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)
