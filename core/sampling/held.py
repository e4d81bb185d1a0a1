"""Held spans on disk (``$PIPETRACE_HOME/tail.db``): a run's spans wait here until the run ends.

Many processes share the file (WAL). Holding and deciding take SQLite's write lock, so a span is either
held before its trace is decided (and leaves with the decision) or sees the decision — never both,
never neither. Memory stays bounded: spans are written as they come and read back in chunks.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

SCHEMA = """
CREATE TABLE IF NOT EXISTS held (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    held_ns INTEGER NOT NULL,
    error INTEGER NOT NULL DEFAULT 0,
    retry INTEGER NOT NULL DEFAULT 0,
    pipeline TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS held_trace ON held (trace_id, seq);
CREATE INDEX IF NOT EXISTS held_age ON held (held_ns);
CREATE TABLE IF NOT EXISTS decisions (
    trace_id TEXT PRIMARY KEY,
    decision TEXT NOT NULL,
    policy TEXT NOT NULL,
    rate REAL,
    run_span_id TEXT,
    decided_ns INTEGER NOT NULL,
    expires_ns INTEGER,
    pruned INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS decisions_expiry ON decisions (pruned, expires_ns);
"""

T = TypeVar("T")


@dataclass(frozen=True)
class Decision:
    trace_id: str
    keep: bool
    policy: str
    rate: float | None
    run_span_id: str | None
    decided_ns: int


@dataclass(frozen=True)
class HeldSpan:
    trace_id: str
    span_id: str
    error: bool
    retry: bool
    pipeline: str | None
    data: str


class HeldStore:
    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout_s, isolation_level=None,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
        self._retry(lambda: conn.execute("PRAGMA journal_mode=WAL"))
        conn.execute("PRAGMA synchronous=NORMAL")
        self._retry(lambda: conn.executescript(SCHEMA))
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _retry(self, fn: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01 + random.random() * 0.05)

    def _txn(self, body: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = body(conn)
                conn.execute("COMMIT")
                return out
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        with self._lock:
            return self._retry(run)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # ---- holding -------------------------------------------------------------------------------------
    def hold(self, spans: Sequence[HeldSpan]) -> dict[str, Decision]:
        """Hold spans of undecided traces; returns the decisions of traces already decided (their
        spans are late: the caller exports or drops them by that decision)."""
        now = time.time_ns()

        def body(conn: sqlite3.Connection) -> dict[str, Decision]:
            decided: dict[str, Decision] = {}
            for trace_id in {s.trace_id for s in spans}:
                d = self._decision(conn, trace_id)
                if d is not None:
                    decided[trace_id] = d
            rows = [(s.trace_id, s.span_id, now, int(s.error), int(s.retry), s.pipeline, s.data)
                    for s in spans if s.trace_id not in decided]
            if rows:
                conn.executemany("INSERT INTO held (trace_id, span_id, held_ns, error, retry, pipeline, data) "
                                 "VALUES (?,?,?,?,?,?,?)", rows)
            return decided

        return self._txn(body)

    @staticmethod
    def _decision(conn: sqlite3.Connection, trace_id: str) -> Decision | None:
        row = conn.execute("SELECT decision, policy, rate, run_span_id, decided_ns FROM decisions "
                           "WHERE trace_id=?", (trace_id,)).fetchone()
        if row is None:
            return None
        return Decision(trace_id, row[0] == "keep", row[1], row[2], row[3], row[4])

    def decision(self, trace_id: str) -> Decision | None:
        with self._lock:
            conn = self._connect()
            return self._retry(lambda: self._decision(conn, trace_id))

    def flags(self, trace_id: str) -> tuple[bool, bool, int]:
        """(any held span failed, any held span retried, number held) for one trace."""
        with self._lock:
            conn = self._connect()
            row = self._retry(lambda: conn.execute(
                "SELECT MAX(error), MAX(retry), COUNT(*) FROM held WHERE trace_id=?", (trace_id,)).fetchone())
        return bool(row[0]), bool(row[1]), int(row[2] or 0)

    def decide(self, decision: Decision, *, expires_ns: int | None) -> bool:
        """Record the decision; True if this call made it (the caller then owns the held spans)."""
        def body(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT OR IGNORE INTO decisions (trace_id, decision, policy, rate, run_span_id, decided_ns, "
                "expires_ns) VALUES (?,?,?,?,?,?,?)",
                (decision.trace_id, "keep" if decision.keep else "drop", decision.policy, decision.rate,
                 decision.run_span_id, decision.decided_ns, expires_ns))
            return cur.rowcount == 1

        return self._txn(body)

    def drain(self, trace_id: str, chunk: int = 512) -> Iterator[list[HeldSpan]]:
        """The trace's held spans, oldest first, ``chunk`` at a time; each chunk is deleted once the
        consumer asks for the next (or finishes)."""
        select = ("SELECT seq, trace_id, span_id, error, retry, pipeline, data FROM held WHERE trace_id=? "
                  "ORDER BY seq LIMIT ?")
        delete = "DELETE FROM held WHERE trace_id=? AND seq<=?"
        while True:
            rows = self.query(select, (trace_id, chunk))
            if not rows:
                return
            yield [HeldSpan(r[1], r[2], bool(r[3]), bool(r[4]), r[5], r[6]) for r in rows]
            params = (trace_id, rows[-1][0])
            self._txn(lambda c, p=params: c.execute(delete, p))  # type: ignore[misc]
            if len(rows) < chunk:
                return

    # ---- housekeeping --------------------------------------------------------------------------------
    def stale_traces(self, older_than_ns: int, limit: int = 100) -> list[tuple[str, str | None]]:
        """Undecided traces whose oldest held span is older than ``older_than_ns`` (run end never came)."""
        with self._lock:
            conn = self._connect()
            rows = self._retry(lambda: conn.execute(
                "SELECT trace_id, MAX(pipeline) FROM held GROUP BY trace_id HAVING MIN(held_ns) < ? "
                "LIMIT ?", (older_than_ns, limit)).fetchall())
        return [(r[0], r[1]) for r in rows]

    def orphaned(self, decided_before_ns: int, limit: int = 100) -> list[Decision]:
        """Decided traces that still hold spans long after the decision (the decider died mid-export)."""
        with self._lock:
            conn = self._connect()
            rows = self._retry(lambda: conn.execute(
                "SELECT DISTINCT h.trace_id FROM held h JOIN decisions d ON d.trace_id=h.trace_id "
                "WHERE d.decided_ns < ? LIMIT ?", (decided_before_ns, limit)).fetchall())
            out = [self._decision(conn, r[0]) for r in rows]
        return [d for d in out if d is not None]

    def expired_drops(self, now_ns: int, limit: int = 500) -> list[str]:
        with self._lock:
            conn = self._connect()
            rows = self._retry(lambda: conn.execute(
                "SELECT trace_id FROM decisions WHERE pruned=0 AND expires_ns IS NOT NULL AND expires_ns < ? "
                "LIMIT ?", (now_ns, limit)).fetchall())
        return [r[0] for r in rows]

    def mark_pruned(self, trace_ids: Sequence[str]) -> None:
        self._txn(lambda c: c.executemany("UPDATE decisions SET pruned=1 WHERE trace_id=?",
                                          [(t,) for t in trace_ids]))

    def forget_decisions(self, decided_before_ns: int) -> None:
        """Old decisions of traces with nothing left to do (kept, or dropped and pruned)."""
        self._txn(lambda c: c.execute(
            "DELETE FROM decisions WHERE decided_ns < ? AND (decision='keep' OR pruned=1) "
            "AND trace_id NOT IN (SELECT trace_id FROM held)", (decided_before_ns,)))

    def count(self) -> int:
        with self._lock:
            conn = self._connect()
            return int(self._retry(lambda: conn.execute("SELECT COUNT(*) FROM held").fetchone()[0]))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            conn = self._connect()
            return self._retry(lambda: conn.execute(sql, params).fetchall())
