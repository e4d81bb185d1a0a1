"""The backend interface under the store API, and its SQLite implementation (the embedded default).

Queries are written once, with ``?`` placeholders and portable SQL; the few dialect differences (glob
match, string aggregation, JSON access) are methods here. Each backend owns connecting, retrying and
migrating (see ``schema.py``); everything above it calls ``query``/``run``/``write_spans``.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from . import schema

T = TypeVar("T")
log = logging.getLogger("pipetrace.store")

SPAN_COLUMNS = ("trace_id", "span_id", "parent_span_id", "name", "kind", "start_ns", "end_ns", "status",
                "status_message", "system", "pipeline", "run_id", "task", "result", "is_run", "quality",
                "attributes", "events", "links", "resource", "scope")

UPSERT = (f"INSERT INTO spans ({', '.join(SPAN_COLUMNS)}) VALUES ({','.join('?' * len(SPAN_COLUMNS))}) "
          "ON CONFLICT (trace_id, span_id) DO UPDATE SET "
          + ", ".join(f"{c}=excluded.{c}" for c in SPAN_COLUMNS[2:])
          + " WHERE excluded.quality >= spans.quality")


PAGE_SIZE = 8192
"""SQLite page size of a store file created from now on (files made before keep theirs; the schema and
rows are the same either way). A span row is ~0.9-1.5 KB; with SQLite's default 4 KB pages a row of a
``WITHOUT ROWID`` table keeps at most ~1 KB in its page and spills the rest to an overflow page of its
own, mostly empty: ~4.8 KB of file and of WAL writes per span. 8 KB pages hold rows up to ~2 KB whole:
the file is ~2.7x smaller and a write of a run's spans costs ~25 % less CPU. (16 KB pages measured no
better: a commit rewrites each index page it touches, ~1 per span, and those get twice as large.)"""


WAL_CHECKPOINT_PAGES = 4000
"""SQLite's automatic checkpoint runs when the WAL holds this many pages (its default: 1,000). A
commit of a run's spans appends ~70 pages (8 KB) to the WAL, ~45 of them the task index's (a page per
task of the run, the same ones every run); a checkpoint copies each page's latest version into the
file and syncs both. Four times the interval: a page rewritten by every commit is copied a quarter as
often, and a quarter of the syncs: ~10 % less CPU for the writer. The cost: the WAL file grows to
~32 MB (16 MB with a file's older 4 KB pages) while a process has the store open, against ~8 MB."""


class Cursor(Protocol):
    rowcount: int

    def fetchall(self) -> list[Any]: ...

    def fetchone(self) -> Any: ...


class Conn(Protocol):
    """What a ``run`` body gets: ``execute``/``executemany`` with ``?`` placeholders on either backend."""

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...

    def executemany(self, sql: str, seq: Any) -> Any: ...


class Backend(ABC):
    dialect: str
    component: str

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read statement."""

    @abstractmethod
    def run(self, fn: Callable[[Conn], T], *, write: bool = False) -> T:
        """``fn(conn)`` under the backend's lock and retry; in one write transaction if ``write``."""

    @abstractmethod
    def write_spans(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Upsert span rows (``SPAN_COLUMNS`` order); a live span wins over an after-the-fact copy."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """Where the store is, safe to print (no password)."""

    def schema_version(self) -> int:
        rows = self.query("SELECT version FROM pipetrace_schema WHERE component=?", (self.component,))
        return int(rows[0][0]) if rows else 0

    @abstractmethod
    def size_bytes(self) -> int: ...

    @abstractmethod
    def free_bytes(self) -> int: ...

    @abstractmethod
    def vacuum(self) -> None: ...

    def delete_traces(self, conn: Conn, trace_ids: Sequence[str]) -> int:
        """Delete the traces' spans and anomaly flags inside a write transaction; returns spans deleted."""
        marks = ",".join("?" * len(trace_ids))
        n = conn.execute(f"DELETE FROM spans WHERE trace_id IN ({marks})", list(trace_ids)).rowcount
        conn.execute(f"DELETE FROM anomalies WHERE trace_id IN ({marks})", list(trace_ids))
        return int(n)

    def trace_range(self, trace_id: str) -> tuple[str, tuple[int, ...]] | None:
        """None if no span of the trace is stored, else a condition (`` AND …``, its parameters) that
        narrows a query on one trace's spans to where they are (nothing to add on SQLite)."""
        return ("", ()) if self.query("SELECT 1 FROM spans WHERE trace_id=? LIMIT 1", (trace_id,)) else None

    def trace_of_run(self, run_id: str) -> str | None:
        """The trace of a run id: the newest with a run span of it, else the newest with any span of it
        (a run in progress, or a Celery/kombu run not closed yet)."""
        # unary + on is_run: the run id's own index finds its few spans (a run-span index would read them all)
        rows = self.query(
            "SELECT trace_id FROM spans WHERE +is_run=1 AND run_id=? ORDER BY +start_ns DESC LIMIT 1", (run_id,))
        if not rows:
            rows = self.query("SELECT trace_id FROM spans WHERE run_id=? ORDER BY start_ns DESC LIMIT 1", (run_id,))
        return rows[0][0] if rows else None

    @abstractmethod
    def drop_before(self, cutoff_ns: int) -> int:
        """Retention by age: remove every span that started before ``cutoff_ns``; returns spans removed."""

    # ---- dialect: SQL templates a backend overrides (SQLite's here) ---------------------------------
    GLOB = "{column} GLOB ?"
    DISTINCT_LIST = "GROUP_CONCAT(DISTINCT {column})"
    JSON_TEXT = "json_extract({column}, '$.\"{key}\"')"
    JSON_SET_TWO = "json_set({column}, '$.\"{key1}\"', ?, '$.\"{key2}\"', ?)"
    """An expression setting two keys of a JSON text column to the next two ``?`` parameters."""

    def glob(self, column: str) -> str:
        return self.GLOB.format(column=column)

    def glob_param(self, pattern: str) -> str:
        return pattern

    def distinct_list(self, column: str) -> str:
        return self.DISTINCT_LIST.format(column=column)

    def json_text(self, column: str, key: str) -> str:
        return self.JSON_TEXT.format(column=column, key=key)

    def json_set_two(self, column: str, key1: str, key2: str) -> str:
        return self.JSON_SET_TWO.format(column=column, key1=key1, key2=key2)


class SqliteBackend(Backend):
    """One SQLite file in WAL mode, safe with many writer processes (busy-retry on lock contention)."""

    dialect = "sqlite"

    def __init__(self, path: str | os.PathLike[str], *, component: str = schema.SPANS,
                 busy_timeout_s: float = 60.0, repair: bool = False) -> None:
        self.path = Path(path)
        self.component = component
        self.busy_timeout_s = busy_timeout_s
        self.repair = repair
        self.lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1

    def connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = self._open()
        except sqlite3.DatabaseError as exc:
            if not (self.repair and is_corruption(exc)):
                raise
            self.quarantine(exc)
            conn = self._open()
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout_s, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # a new file only; an existing one keeps its own
            self.retry(lambda: conn.execute("PRAGMA journal_mode=WAL"))
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            self.retry(lambda: self._migrate(conn))
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute(schema.VERSION_TABLE)
        row = conn.execute("SELECT version FROM pipetrace_schema WHERE component=?", (self.component,)).fetchone()
        if row is not None and row[0] == schema.latest(self.component, self.dialect):
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT version FROM pipetrace_schema WHERE component=?",
                               (self.component,)).fetchone()
            current = int(row[0]) if row else 0
            for script in schema.pending(self.dialect, self.component, current, str(self.path)):
                for stmt in schema.statements(script):
                    conn.execute(stmt)
            conn.execute("INSERT INTO pipetrace_schema (component, version) VALUES (?, ?) ON CONFLICT (component) "
                         "DO UPDATE SET version=excluded.version",
                         (self.component, schema.latest(self.component, self.dialect)))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def quarantine(self, reason: BaseException) -> Path:
        """Move a corrupted store file (and its WAL) aside so a fresh one can be written; keep it for forensics."""
        with self.lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
            target = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}-{os.getpid()}")
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.path) + suffix)
                if src.exists():
                    try:
                        src.rename(Path(str(target) + suffix))
                    except FileNotFoundError:  # another writer process moved it first
                        pass
            log.warning("pipetrace: store %s is corrupted (%s); moved it to %s and started a new one",
                        self.path, reason, target)
            return target

    def retry(self, fn: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01 + random.random() * 0.05)

    def close(self) -> None:
        with self.lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            conn = self.connect()
            return self.retry(lambda: conn.execute(sql, params).fetchall())

    def run(self, fn: Callable[[Conn], T], *, write: bool = False) -> T:
        def attempt() -> T:
            conn = self.connect()
            if not write:
                return fn(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn)
                conn.execute("COMMIT")
                return out
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        with self.lock:
            return self.retry(attempt)

    def write_spans(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self.run(lambda conn: conn.executemany(UPSERT, rows), write=True)

    def describe(self) -> str:
        return f"sqlite {self.path}"

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += os.path.getsize(f"{self.path}{suffix}")
            except OSError:
                pass
        return total

    def free_bytes(self) -> int:
        free = self.query("PRAGMA freelist_count")[0][0]
        size = self.query("PRAGMA page_size")[0][0]
        return int(free) * int(size)

    def vacuum(self) -> None:
        def q(conn: Conn) -> None:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        self.run(q)

    def drop_before(self, cutoff_ns: int) -> int:
        def rm(conn: Conn) -> int:
            conn.execute("DELETE FROM anomalies WHERE start_ns < ?", (cutoff_ns,))
            return int(conn.execute("DELETE FROM spans WHERE start_ns < ?", (cutoff_ns,)).rowcount)

        return self.run(rm, write=True)


def is_corruption(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError) and (
        "not a database" in text or "malformed" in text or "corrupt" in text)
