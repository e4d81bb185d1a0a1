"""Tail sampling's tables: held spans and decisions (``$PIPETRACE_HOME/tail.db``, or the PostgreSQL store).

Holding and deciding are serialized per trace (SQLite: its write lock; PostgreSQL: a transaction-scoped
advisory lock on the trace), so a span is either held before its trace is decided (and leaves with the
decision) or sees the decision — never both, never neither — across every process and, with PostgreSQL,
every host. The decision row is inserted with ``ON CONFLICT DO NOTHING``: exactly one process makes it
and exports. Memory stays bounded: spans are written as they come and read back in chunks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import schema, target
from .backend import Backend, Conn, SqliteBackend


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


def _decision(conn: Conn, trace_id: str) -> Decision | None:
    row = conn.execute("SELECT decision, policy, rate, run_span_id, decided_ns FROM decisions "
                       "WHERE trace_id=?", (trace_id,)).fetchone()
    if row is None:
        return None
    return Decision(trace_id, row[0] == "keep", row[1], row[2], row[3], int(row[4]))


class HeldStore:
    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 60.0,
                 backend: Backend | None = None) -> None:
        self.path = Path(path)
        if backend is None:
            pg = target.for_path(self.path)
            if pg is not None:
                from .postgres import PostgresBackend

                backend = PostgresBackend(pg, component=schema.HELD)
            else:
                backend = SqliteBackend(self.path, component=schema.HELD, busy_timeout_s=busy_timeout_s)
        self.backend = backend

    @property
    def shared(self) -> bool:
        """True when every host sees these tables (PostgreSQL): decisions are fleet-wide."""
        return self.backend.dialect != "sqlite"

    def _lock_traces(self, conn: Conn, trace_ids: Sequence[str]) -> None:
        lock = getattr(self.backend, "lock_traces", None)
        if lock is not None:
            lock(conn, trace_ids)

    def close(self) -> None:
        self.backend.close()

    @contextmanager
    def claim(self, trace_id: str) -> Iterator[bool]:
        """True while this process may export the trace's held spans: on a shared (PostgreSQL) store, a
        session advisory lock, so two hosts finishing the same orphaned export never both send it."""
        try_lock = getattr(self.backend, "try_session_lock", None)
        if try_lock is None:
            yield True
            return
        key = f"pipetrace-release:{trace_id}"
        mine = bool(try_lock(key))
        try:
            yield mine
        finally:
            if mine:
                self.backend.session_unlock(key)  # type: ignore[attr-defined]

    # ---- holding -------------------------------------------------------------------------------------
    def hold(self, spans: Sequence[HeldSpan]) -> dict[str, Decision]:
        """Hold spans of undecided traces; returns the decisions of traces already decided (their
        spans are late: the caller exports or drops them by that decision)."""
        now = time.time_ns()

        def body(conn: Conn) -> dict[str, Decision]:
            trace_ids = sorted({s.trace_id for s in spans})
            self._lock_traces(conn, trace_ids)
            decided: dict[str, Decision] = {}
            for trace_id in trace_ids:
                d = _decision(conn, trace_id)
                if d is not None:
                    decided[trace_id] = d
            rows = [(s.trace_id, s.span_id, now, int(s.error), int(s.retry), s.pipeline, s.data)
                    for s in spans if s.trace_id not in decided]
            if rows:
                conn.executemany("INSERT INTO held (trace_id, span_id, held_ns, error, retry, pipeline, data) "
                                 "VALUES (?,?,?,?,?,?,?)", rows)
            return decided

        return self.backend.run(body, write=True)

    def decision(self, trace_id: str) -> Decision | None:
        return self.backend.run(lambda conn: _decision(conn, trace_id))

    def flags(self, trace_id: str) -> tuple[bool, bool, int]:
        """(any held span failed, any held span retried, number held) for one trace."""
        row = self.backend.query("SELECT MAX(error), MAX(retry), COUNT(*) FROM held WHERE trace_id=?",
                                 (trace_id,))[0]
        return bool(row[0]), bool(row[1]), int(row[2] or 0)

    def decide(self, decision: Decision, *, expires_ns: int | None) -> bool:
        """Record the decision; True if this call made it (the caller then owns the held spans)."""
        def body(conn: Conn) -> bool:
            self._lock_traces(conn, [decision.trace_id])
            cur = conn.execute(
                "INSERT INTO decisions (trace_id, decision, policy, rate, run_span_id, decided_ns, expires_ns) "
                "VALUES (?,?,?,?,?,?,?) ON CONFLICT (trace_id) DO NOTHING",
                (decision.trace_id, "keep" if decision.keep else "drop", decision.policy, decision.rate,
                 decision.run_span_id, decision.decided_ns, expires_ns))
            return bool(cur.rowcount == 1)

        return self.backend.run(body, write=True)

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
            self.backend.run(lambda c, p=params: c.execute(delete, p), write=True)  # type: ignore[misc]
            if len(rows) < chunk:
                return

    # ---- housekeeping --------------------------------------------------------------------------------
    def stale_traces(self, older_than_ns: int, limit: int = 100) -> list[tuple[str, str | None]]:
        """Undecided traces whose oldest held span is older than ``older_than_ns`` (run end never came)."""
        rows = self.query("SELECT trace_id, MAX(pipeline) FROM held GROUP BY trace_id HAVING MIN(held_ns) < ? "
                          "LIMIT ?", (older_than_ns, limit))
        return [(r[0], r[1]) for r in rows]

    def orphaned(self, decided_before_ns: int, limit: int = 100) -> list[Decision]:
        """Decided traces that still hold spans long after the decision (the decider died mid-export)."""
        def body(conn: Conn) -> list[Decision]:
            rows = conn.execute(
                "SELECT DISTINCT h.trace_id FROM held h JOIN decisions d ON d.trace_id=h.trace_id "
                "WHERE d.decided_ns < ? LIMIT ?", (decided_before_ns, limit)).fetchall()
            out = [_decision(conn, r[0]) for r in rows]
            return [d for d in out if d is not None]

        return self.backend.run(body)

    def expired_drops(self, now_ns: int, limit: int = 500) -> list[str]:
        rows = self.query("SELECT trace_id FROM decisions WHERE pruned=0 AND expires_ns IS NOT NULL "
                          "AND expires_ns < ? LIMIT ?", (now_ns, limit))
        return [r[0] for r in rows]

    def mark_pruned(self, trace_ids: Sequence[str]) -> None:
        self.backend.run(lambda c: c.executemany("UPDATE decisions SET pruned=1 WHERE trace_id=?",
                                                 [(t,) for t in trace_ids]), write=True)

    def forget_decisions(self, decided_before_ns: int) -> None:
        """Old decisions of traces with nothing left to do (kept, or dropped and pruned)."""
        self.backend.run(lambda c: c.execute(
            "DELETE FROM decisions WHERE decided_ns < ? AND (decision='keep' OR pruned=1) "
            "AND trace_id NOT IN (SELECT trace_id FROM held)", (decided_before_ns,)), write=True)

    def count(self) -> int:
        return int(self.query("SELECT COUNT(*) FROM held")[0][0])

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.backend.query(sql, params)
