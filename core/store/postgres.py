"""PostgreSQL backend (``PIPETRACE_STORE=postgresql://…``): the fleet store every host writes and reads.

psycopg 3. A batch goes by binary COPY straight into the span table (its day partitions) when it cannot
hold a second copy of a stored span: span ids are derived, so a live span is reported once, and the same
span sent twice (an export retry, a buffer drained twice) has the same start and trips the primary key,
which sends the whole batch down the merge instead. The rows that can have a copy under another start —
placeholders (quality 1), run spans, and spans of traces that hold a placeholder — always take the merge:
COPY into a per-connection staging table, then one upsert (idempotent on the span's ids, a live span
winning over an after-the-fact copy). In the same transaction the writer keeps ``span_traces`` (each
trace's start-time range: a lookup touches only its days) and ``span_runs`` (run id -> trace).
The span table is range-partitioned by start time, one partition per UTC day, created on demand;
retention drops whole partitions. Schema changes run under an advisory lock so many hosts can start at once.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from . import schema
from .backend import SPAN_COLUMNS, Backend, Conn
from .target import PgTarget, mask_text

T = TypeVar("T")
DAY_NS = 86_400 * 10**9
CONNECT_TIMEOUT_S = 5
WRITE_TIMEOUT = "30s"  # a write never waits longer than this on a slow server (the buffer takes over)

_TYPES = ["text", "text", "text", "text", "text", "int8", "int8", "text", "text", "text", "text", "text",
          "text", "text", "int2", "int2", "text", "text", "text", "text", "text"]
_UPDATE = ", ".join(f"{c}=excluded.{c}" for c in SPAN_COLUMNS[2:])
_COLS = ", ".join(SPAN_COLUMNS)
# a copy of the same span under another start time (an after-the-fact placeholder) is looked for within a
# day either side; the batch's own span of days, as constants ({lo}, {hi}), lets the planner prune the
# span table to those days' partitions (planning and opening every partition of a long history per batch
# costs more than the merge itself)
_NEAR = (f"s.start_ns BETWEEN t.start_ns - {DAY_NS} AND t.start_ns + {DAY_NS} AND s.start_ns<>t.start_ns "
         "AND s.start_ns BETWEEN {lo} AND {hi}")
_MERGE = [
    # a lower-quality copy of the same span stored under another start time goes
    "DELETE FROM spans s USING pt_stage t WHERE s.trace_id=t.trace_id AND s.span_id=t.span_id "
    f"AND {_NEAR} AND t.quality>=s.quality",
    f"INSERT INTO spans ({_COLS}) SELECT DISTINCT ON (trace_id, span_id, start_ns) {_COLS} FROM pt_stage t "
    "WHERE NOT EXISTS (SELECT 1 FROM spans s WHERE s.trace_id=t.trace_id AND s.span_id=t.span_id "
    f"AND {_NEAR} AND s.quality>t.quality) "
    "ORDER BY trace_id, span_id, start_ns, quality DESC "
    f"ON CONFLICT (trace_id, span_id, start_ns) DO UPDATE SET {_UPDATE} WHERE excluded.quality >= spans.quality",
]


# the batch's run ids and traces in one statement (one round trip): span_runs by a data-modifying CTE
_INDEX_UPSERT = (
    "WITH runs AS (INSERT INTO span_runs (run_id, trace_id, last_ns) "
    "SELECT * FROM unnest(%s::text[], %s::text[], %s::int8[]) ORDER BY 1, 2 "
    "ON CONFLICT (run_id, trace_id) DO UPDATE SET last_ns=excluded.last_ns "
    "WHERE excluded.last_ns > span_runs.last_ns) "
    "INSERT INTO span_traces (trace_id, first_ns, last_ns, placeholder) "
    "SELECT * FROM unnest(%s::text[], %s::int8[], %s::int8[], %s::bool[]) ORDER BY 1 "
    "ON CONFLICT (trace_id) DO UPDATE SET first_ns=LEAST(span_traces.first_ns, excluded.first_ns), "
    "last_ns=GREATEST(span_traces.last_ns, excluded.last_ns), "
    "placeholder=span_traces.placeholder OR excluded.placeholder RETURNING trace_id, placeholder")


def _last_copies(rows: Sequence[tuple[Any, ...]]) -> Sequence[tuple[Any, ...]]:
    """One row per span id within a batch: a later copy wins unless it is of lower quality (as SQLite's
    upsert applies a batch row by row)."""
    seen: dict[tuple[str, str], tuple[Any, ...]] = {}
    for r in rows:
        old = seen.get((r[0], r[1]))
        if old is None or r[15] >= old[15]:
            seen[(r[0], r[1])] = r
    return rows if len(seen) == len(rows) else list(seen.values())


def _index_rows(rows: Sequence[tuple[Any, ...]]) -> tuple[tuple[list[Any], ...], tuple[list[Any], ...]]:
    """The batch's ``span_traces`` and ``span_runs`` rows, as column arrays for one ``unnest`` each."""
    traces: dict[str, list[Any]] = {}
    runs: dict[tuple[str, str], int] = {}
    for r in rows:
        trace_id, start = r[0], int(r[5])
        t = traces.get(trace_id)
        if t is None:
            traces[trace_id] = [start, start, r[15] < 2]
        else:
            t[0], t[1], t[2] = min(t[0], start), max(t[1], start), t[2] or r[15] < 2
        if r[11] is not None:
            key = (r[11], trace_id)
            runs[key] = max(runs.get(key, start), start)
    ids = sorted(traces)
    keys = sorted(runs)
    return (([*ids], [traces[t][0] for t in ids], [traces[t][1] for t in ids], [traces[t][2] for t in ids]),
            ([k[0] for k in keys], [k[1] for k in keys], [runs[k] for k in keys]))


def _copy(conn: Any, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({_COLS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(_TYPES)
        for row in rows:
            copy.write_row(row)


def _merge(conn: Any, rows: Sequence[tuple[Any, ...]]) -> None:
    """Rows that may have a stored copy: staged, then merged (inside the caller's transaction)."""
    _copy(conn, "pt_stage", rows)
    starts = [int(r[5]) for r in rows]
    bounds = {"{lo}": str(min(starts) - DAY_NS), "{hi}": str(max(starts) + DAY_NS)}
    merge = []
    for stmt in _MERGE:
        for key, value in bounds.items():
            stmt = stmt.replace(key, value)
        merge.append(stmt)
    conn.execute("; ".join([*_PROBES_ONLY, *merge]))  # one round trip: no parameters, the simple protocol


# Neither the staging table nor a day partition just filled has statistics yet: the planner would read
# the batch's partitions whole for a few staged rows. Leave it only per-row primary-key probes, and no JIT
# (the disabled paths' cost would make it compile the statement, seconds per batch).
_PROBES_ONLY = ["SET LOCAL jit = off", *(f"SET LOCAL enable_{m} = off"
                                         for m in ("hashjoin", "mergejoin", "seqscan", "bitmapscan", "material"))]


_INHERITED: list[Any] = []  # connections a forked child got from its parent, kept alive untouched


class StoreUnavailable(RuntimeError):
    """The PostgreSQL store cannot be reached or refused the statement (message has no password)."""


def _translate(sql: str, params: Sequence[Any] | None) -> str:
    """Our portable SQL (``?`` placeholders) in psycopg's paramstyle (untouched without parameters)."""
    return sql.replace("%", "%%").replace("?", "%s") if params else sql


class _PgConn:
    """psycopg connection wearing the ``Conn`` interface (``?`` placeholders)."""

    def __init__(self, conn: Any) -> None:
        self.raw = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.raw.execute(_translate(sql, params), params or None)

    def executemany(self, sql: str, seq: Any) -> Any:
        cur = self.raw.cursor()
        rows = list(seq)
        if rows:
            cur.executemany(_translate(sql, rows[0]), rows)
        return cur


class PostgresBackend(Backend):
    dialect = "postgresql"

    def __init__(self, target: PgTarget, *, component: str = schema.SPANS) -> None:
        self.target = target
        self.component = component
        self.lock = threading.RLock()
        self._conn: Any = None
        self._pid = -1
        self._partitions: set[int] = set()
        self.deleted_bytes = 0

    # ---- connection ---------------------------------------------------------------------------------
    def connect(self) -> Any:
        if self._conn is not None and self._pid == os.getpid() and not self._conn.closed:
            return self._conn
        if self._conn is not None and self._pid != os.getpid():
            # inherited over fork (prefork workers): never finalize it here, that would end the parent's session
            _INHERITED.append(self._conn)
            self._conn = None
        import psycopg

        try:
            conn = psycopg.connect(self.target.conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                                   application_name="pipetrace")
        except psycopg.Error as exc:
            raise StoreUnavailable(f"pipetrace: cannot connect to the store {self.target.masked}: "
                                   f"{mask_text(str(exc).strip(), self.target)}") from None
        try:
            self._migrate(conn)
            conn.execute(f"SET search_path TO {self.target.schema}")
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS pt_stage (LIKE spans INCLUDING DEFAULTS) "
                         "ON COMMIT DELETE ROWS")
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        self._partitions = {int(r[0]) for r in conn.execute(
            "SELECT substring(c.relname from 7)::int FROM pg_inherits i JOIN pg_class c ON c.oid=i.inhrelid "
            "JOIN pg_class p ON p.oid=i.inhparent JOIN pg_namespace n ON n.oid=p.relnamespace "
            "WHERE p.relname='spans' AND n.nspname=%s AND c.relname ~ '^spans_[0-9]+$'",
            (self.target.schema,)).fetchall()} if self.component == schema.SPANS else set()
        return conn

    def _migrate(self, conn: Any) -> None:
        s = self.target.schema
        # both components' tables live in one schema: migrate them together so either opener can read both
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"pipetrace-schema:{s}",))
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
            conn.execute(f"SET LOCAL search_path TO {s}")
            conn.execute(schema.VERSION_TABLE)
            for component in (schema.SPANS, schema.HELD):
                row = conn.execute("SELECT version FROM pipetrace_schema WHERE component=%s",
                                   (component,)).fetchone()
                current = int(row[0]) if row else 0
                steps = schema.pending(self.dialect, component, current, self.target.masked)
                for script in steps:
                    for stmt in schema.statements(script):
                        conn.execute(stmt)
                if steps:
                    conn.execute("INSERT INTO pipetrace_schema (component, version) VALUES (%s, %s) "
                                 "ON CONFLICT (component) DO UPDATE SET version=excluded.version",
                                 (component, schema.latest(component, self.dialect)))

    def close(self) -> None:
        with self.lock:
            if self._conn is not None and self._pid == os.getpid():
                try:
                    self._conn.close()
                except Exception:  # noqa: BLE001 - closing a broken connection
                    pass
            self._conn = None

    def interrupt(self) -> None:
        """Cut this process's connection from another thread, so a statement waiting on a server that
        stopped answering (frozen, or a network that drops packets silently) fails now. No lock: the
        waiting statement holds it."""
        conn = self._conn
        if conn is None or self._pid != os.getpid():
            return
        try:
            sock = socket.socket(fileno=os.dup(conn.fileno()))
        except (OSError, ValueError):
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            sock.close()  # the duplicate only; the driver's descriptor now reads end-of-file

    def _guard(self, fn: Callable[[Any], T]) -> T:
        """Run with a live connection; a lost connection is closed (next call reconnects) and reported
        as StoreUnavailable without the password."""
        import psycopg

        with self.lock:
            try:
                return fn(self.connect())
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self.close()
                raise StoreUnavailable(f"pipetrace: store {self.target.masked}: "
                                       f"{mask_text(str(exc).strip(), self.target)}") from None

    # ---- Backend ------------------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._guard(lambda c: c.execute(_translate(sql, params), params or None).fetchall())

    def run(self, fn: Callable[[Conn], T], *, write: bool = False) -> T:
        def body(conn: Any) -> T:
            if not write:
                return fn(_PgConn(conn))
            with conn.transaction():
                return fn(_PgConn(conn))

        return self._guard(body)

    def write_spans(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        rows = _last_copies(rows)
        days = {int(r[5]) // DAY_NS for r in rows}
        traces, runs = _index_rows(rows)

        def body(conn: Any) -> None:
            import psycopg

            try:
                write(conn, merge_all=False)
            except psycopg.errors.UniqueViolation:  # a span sent again (same start): merge the whole batch
                write(conn, merge_all=True)
            except psycopg.errors.CheckViolation:  # a partition dropped by retention elsewhere: make it again
                self._partitions.clear()
                write(conn, merge_all=False)

        def write(conn: Any, *, merge_all: bool) -> None:
            self._ensure_partitions(conn, days)
            # few round trips per batch: on a busy host each one waits for the server process to be scheduled
            conn.execute(f"BEGIN; SET LOCAL statement_timeout = '{WRITE_TIMEOUT}'")
            try:
                # the trace rows are locked (sorted) before any span goes in: a placeholder written by
                # another host for one of these traces is either committed and seen here, or waits
                flagged = {r[0] for r in conn.execute(_INDEX_UPSERT, (*runs, *traces)).fetchall() if r[1]}
                direct: list[tuple[Any, ...]] = []
                merged: list[tuple[Any, ...]] = []
                for r in rows:  # quality 2, not a run span, trace without a placeholder
                    fast = not merge_all and r[15] >= 2 and not r[14] and r[0] not in flagged
                    (direct if fast else merged).append(r)
                if direct:
                    _copy(conn, "spans", direct)
                if merged:
                    _merge(conn, merged)
                conn.execute("COMMIT")
            except BaseException:
                if not conn.closed:
                    conn.execute("ROLLBACK")
                raise

        self._guard(body)

    def lock_traces(self, conn: Conn, trace_ids: Sequence[str]) -> None:
        """Transaction-scoped locks on traces (sorted: no deadlock), serializing hold and decide."""
        for trace_id in sorted(set(trace_ids)):
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"pipetrace-trace:{trace_id}",))

    def try_session_lock(self, key: str) -> bool:
        return bool(self.query("SELECT pg_try_advisory_lock(hashtext(?))", (key,))[0][0])

    def session_unlock(self, key: str) -> None:
        self.query("SELECT pg_advisory_unlock(hashtext(?))", (key,))

    def _ensure_partitions(self, conn: Any, days: set[int]) -> None:
        import psycopg

        for day in sorted(days - self._partitions):
            name = self.partition_name(day)
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                                 (f"pipetrace-partition:{self.target.schema}",))
                    conn.execute(f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF spans "
                                 f"FOR VALUES FROM ({day * DAY_NS}) TO ({(day + 1) * DAY_NS})")
            except psycopg.errors.DuplicateTable:
                pass
            self._partitions.add(day)

    @staticmethod
    def partition_name(day: int) -> str:
        return f"spans_{day:06d}"

    def describe(self) -> str:
        return f"postgresql {self.target.masked}"

    def size_bytes(self) -> int:
        """Data and index pages of the schema's tables (main forks and TOAST; not the free-space maps)."""
        rows = self.query(
            "SELECT COALESCE(SUM(pg_relation_size(c.oid) + CASE WHEN c.reltoastrelid <> 0 "
            "THEN pg_relation_size(c.reltoastrelid) ELSE 0 END), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid=c.relnamespace WHERE n.nspname=? AND c.relkind IN ('r', 'i')",
            (self.target.schema,))
        return int(rows[0][0])

    def free_bytes(self) -> int:
        """Bytes of the rows this process deleted (reused by new rows once autovacuum has run)."""
        return self.deleted_bytes

    def delete_traces(self, conn: Conn, trace_ids: Sequence[str]) -> int:
        marks = ",".join("?" * len(trace_ids))
        rows = conn.execute(f"DELETE FROM span_traces WHERE trace_id IN ({marks}) RETURNING trace_id, first_ns, "
                            f"last_ns", list(trace_ids)).fetchall()
        # only the days the traces are in (the span table's primary key is probed in those partitions only)
        lo, hi = (min(int(r[1]) for r in rows), max(int(r[2]) for r in rows)) if rows else (-2**63, 2**63 - 1)
        sizes = conn.execute(f"DELETE FROM spans WHERE trace_id IN ({marks}) AND start_ns BETWEEN ? AND ? "
                             "RETURNING pg_column_size(spans.*)", [*trace_ids, lo, hi]).fetchall()
        conn.execute(f"DELETE FROM span_runs WHERE trace_id IN ({marks})", list(trace_ids))
        conn.execute(f"DELETE FROM anomalies WHERE trace_id IN ({marks})", list(trace_ids))
        self.deleted_bytes += sum(int(r[0]) for r in sizes)
        return len(sizes)

    def trace_range(self, trace_id: str) -> tuple[str, tuple[int, ...]] | None:
        """The trace's start-time range from ``span_traces``: the lookup then plans and reads only the
        day partitions in it (one, for most runs), not one index probe per partition."""
        rows = self.query("SELECT first_ns, last_ns FROM span_traces WHERE trace_id=?", (trace_id,))
        return (" AND start_ns BETWEEN ? AND ?", (int(rows[0][0]), int(rows[0][1]))) if rows else None

    def trace_of_run(self, run_id: str) -> str | None:
        """From ``span_runs``; when the run id is in several traces (a parent run's trace holding a child
        run, pipelines sharing run ids), the newest with a run span of it, looked for only in their days."""
        rows = self.query("SELECT r.trace_id, t.first_ns, t.last_ns FROM span_runs r JOIN span_traces t "
                          "ON t.trace_id=r.trace_id WHERE r.run_id=? ORDER BY r.last_ns DESC LIMIT 200", (run_id,))
        if len(rows) < 2:
            return rows[0][0] if rows else None
        found = self.query("SELECT trace_id FROM spans WHERE is_run=1 AND run_id=? AND start_ns BETWEEN ? AND ? "
                           "AND trace_id IN (SELECT unnest(?::text[])) ORDER BY start_ns DESC LIMIT 1",
                           (run_id, min(int(r[1]) for r in rows), max(int(r[2]) for r in rows), [r[0] for r in rows]))
        return str(found[0][0]) if found else str(rows[0][0])

    def vacuum(self) -> None:
        self._guard(lambda c: c.execute("VACUUM spans"))

    def drop_before(self, cutoff_ns: int) -> int:
        """Drop whole day partitions that end at or before ``cutoff_ns`` (cheap, no row deletes), then
        delete the rows before the cutoff in the partition it falls into."""
        def body(conn: Any) -> int:
            removed = 0
            self._partitions.clear()
            for (name,) in conn.execute(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid=i.inhrelid "
                    "JOIN pg_class p ON p.oid=i.inhparent JOIN pg_namespace n ON n.oid=p.relnamespace "
                    "WHERE p.relname='spans' AND n.nspname=%s ORDER BY c.relname",
                    (self.target.schema,)).fetchall():
                day = int(name[len("spans_"):])
                if (day + 1) * DAY_NS <= cutoff_ns:
                    removed += int(conn.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0])
                    conn.execute(f"DROP TABLE {name}")
                else:
                    self._partitions.add(day)
            with conn.transaction():
                removed += conn.execute("DELETE FROM spans WHERE start_ns < %s", (cutoff_ns,)).rowcount
                conn.execute("DELETE FROM anomalies WHERE start_ns < %s", (cutoff_ns,))
                conn.execute("DELETE FROM span_traces WHERE last_ns < %s", (cutoff_ns,))
                conn.execute("UPDATE span_traces SET first_ns=%s WHERE first_ns < %s", (cutoff_ns, cutoff_ns))
                conn.execute("DELETE FROM span_runs WHERE last_ns < %s", (cutoff_ns,))
            return removed

        return self._guard(body)

    def drop_days_of(self, trace_ids: Sequence[str], now_ns: int) -> tuple[int, list[str]]:
        """Retention of chosen traces by whole days: every day before the first day that holds a span of
        a trace *not* in ``trace_ids`` holds only theirs, so its partition is dropped (no row deletes).
        Days within a day of ``now_ns`` are never dropped whole (a trace's first span may still be on its
        way). Returns (spans removed, those of ``trace_ids`` that still have spans: delete them per trace)."""
        ids = list(trace_ids)
        kept = self.query("SELECT MIN(first_ns) FROM span_traces WHERE trace_id NOT IN (SELECT unnest(?::text[]))",
                          (ids,))[0][0]
        cutoff = min(now_ns - DAY_NS, int(kept) if kept is not None else now_ns) // DAY_NS * DAY_NS
        removed = self.drop_before(cutoff)
        left = self.query("SELECT trace_id FROM span_traces WHERE trace_id IN (SELECT unnest(?::text[]))", (ids,))
        return removed, sorted(r[0] for r in left)

    # ---- dialect ------------------------------------------------------------------------------------
    GLOB = "{column} LIKE ? ESCAPE '\\'"
    DISTINCT_LIST = "string_agg(DISTINCT {column}, ',')"
    JSON_TEXT = "({column}::jsonb ->> '{key}')"
    JSON_SET_TWO = "(({column})::jsonb || jsonb_build_object('{key1}', ?::float8, '{key2}', ?::float8))::text"

    def glob_param(self, pattern: str) -> str:
        out = []
        for ch in pattern:
            if ch in "%_\\":
                out.append("\\" + ch)
            elif ch == "*":
                out.append("%")
            elif ch == "?":
                out.append("_")
            else:
                out.append(ch)
        return "".join(out)

