"""Every table pipetrace stores, per backend, as numbered migrations (the one place that owns the schema).

A ``pipetrace_schema`` table records each component's version. Opening a store applies the missing
migrations in one transaction; a file from before versioning is version 0 and upgrades in place (the
first migration's ``IF NOT EXISTS`` matches what older releases created). A store written by a newer
pipetrace fails at open with :class:`StoreVersionError` instead of being misread.
"""

from __future__ import annotations

SPANS = "spans"  # spans, anomaly flags, alert state
HELD = "held"  # tail sampling: held spans and decisions

VERSION_TABLE = ("CREATE TABLE IF NOT EXISTS pipetrace_schema (component TEXT PRIMARY KEY, "
                 "version INTEGER NOT NULL)")


class StoreVersionError(RuntimeError):
    """The store was written by a newer pipetrace than this one."""


# Column types per dialect: one text of each table below serves both backends.
_TYPES = {
    "sqlite": {"int": "INTEGER", "small": "INTEGER", "real": "REAL", "seq": "INTEGER PRIMARY KEY AUTOINCREMENT",
               "no_rowid": " WITHOUT ROWID"},
    "postgresql": {"int": "BIGINT", "small": "SMALLINT", "real": "DOUBLE PRECISION",
                   "seq": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "no_rowid": ""},
}

_SPAN_COLUMNS = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_ns {int} NOT NULL,
    end_ns {int} NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT,
    system TEXT,
    pipeline TEXT,
    run_id TEXT,
    task TEXT,
    result TEXT,
    is_run {small} NOT NULL DEFAULT 0,
    quality {small} NOT NULL DEFAULT 2,
    attributes TEXT NOT NULL,
    events TEXT NOT NULL,
    links TEXT NOT NULL,
    resource TEXT NOT NULL,
    scope TEXT NOT NULL,"""

_SQLITE_SPANS_V1 = _SPAN_COLUMNS.format(**_TYPES["sqlite"]) + """
    PRIMARY KEY (trace_id, span_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS spans_run ON spans (is_run, start_ns);
CREATE INDEX IF NOT EXISTS spans_run_id ON spans (run_id) WHERE is_run = 1;
CREATE INDEX IF NOT EXISTS spans_task ON spans (pipeline, task);
CREATE INDEX IF NOT EXISTS spans_start ON spans (start_ns);
"""

_ANALYSIS_V2 = """
CREATE TABLE IF NOT EXISTS anomalies (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    pipeline TEXT,
    task TEXT,
    name TEXT NOT NULL,
    start_ns BIGINT NOT NULL,
    duration_ms REAL NOT NULL,
    baseline_ms REAL NOT NULL,
    score REAL NOT NULL,
    basis TEXT NOT NULL,
    detected_ns BIGINT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS anomalies_start ON anomalies (start_ns);
CREATE TABLE IF NOT EXISTS alerts_sent (
    key TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    sent_ns BIGINT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_sent_rule ON alerts_sent (rule, sent_ns);
"""

_HELD_V1 = """
CREATE TABLE IF NOT EXISTS held (
    seq {seq},
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    held_ns {int} NOT NULL,
    error {small} NOT NULL DEFAULT 0,
    retry {small} NOT NULL DEFAULT 0,
    pipeline TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS held_trace ON held (trace_id, seq);
CREATE INDEX IF NOT EXISTS held_age ON held (held_ns);
CREATE TABLE IF NOT EXISTS decisions (
    trace_id TEXT PRIMARY KEY,
    decision TEXT NOT NULL,
    policy TEXT NOT NULL,
    rate {real},
    run_span_id TEXT,
    decided_ns {int} NOT NULL,
    expires_ns {int},
    pruned {small} NOT NULL DEFAULT 0
){no_rowid};
CREATE INDEX IF NOT EXISTS decisions_expiry ON decisions (pruned, expires_ns);
"""

# PostgreSQL: the span table is range-partitioned by start time (one partition a day, created on demand,
# retention drops whole partitions). ``json_extract`` mirrors SQLite's for ad-hoc SQL written against
# either backend. The primary key must hold the partition key, so it is
# (trace_id, span_id, start_ns); writes remove a lower-quality copy of the same span with another start.
_PG_SPANS_V1 = _SPAN_COLUMNS.format(**_TYPES["postgresql"]) + """
    PRIMARY KEY (trace_id, span_id, start_ns)
) PARTITION BY RANGE (start_ns);
CREATE INDEX IF NOT EXISTS spans_runs_recent ON spans (start_ns) WHERE is_run = 1;
CREATE INDEX IF NOT EXISTS spans_run_id ON spans (run_id) WHERE is_run = 1;
CREATE INDEX IF NOT EXISTS spans_start ON spans (start_ns);
CREATE INDEX IF NOT EXISTS spans_task_duration ON spans (pipeline, task, is_run, start_ns)
    INCLUDE (end_ns, status, name);
CREATE OR REPLACE FUNCTION json_extract(doc TEXT, path TEXT) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN path LIKE '$."%"' THEN (doc::jsonb) ->> substr(path, 4, length(path) - 4)
                ELSE (doc::jsonb) #>> string_to_array(substr(path, 3), '.') END
$$
"""

# Any span that names a run id opens that run, with or without a run span (Celery/kombu runs, runs in progress).
_RUN_ID_ANY_V3 = "CREATE INDEX IF NOT EXISTS spans_any_run_id ON spans (run_id)"

# PostgreSQL v4: a trace -> start-time range table (``span_traces``) so a trace lookup touches only the day
# partitions its spans are in (not a probe per partition), whole-day retention knows which traces a
# partition holds, and a placeholder flag tells the writer which traces need the merge; a run id -> trace
# table (``span_runs``) replaces the index on every span's run id. Both are kept by the writer in the
# span batch's transaction. The full start-time btree becomes a BRIN (spans arrive in time order), and
# the duration index covers only spans with a task (what the per-task queries read).
_PG_TRACE_INDEX_V4 = """
CREATE TABLE IF NOT EXISTS span_traces (
    trace_id TEXT PRIMARY KEY,
    first_ns BIGINT NOT NULL,
    last_ns BIGINT NOT NULL,
    placeholder BOOLEAN NOT NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS span_runs (
    run_id TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    last_ns BIGINT NOT NULL,
    PRIMARY KEY (run_id, trace_id)
);
CREATE INDEX IF NOT EXISTS span_runs_last ON span_runs (last_ns);
INSERT INTO span_traces (trace_id, first_ns, last_ns, placeholder)
    SELECT trace_id, MIN(start_ns), MAX(start_ns), bool_or(quality < 2) FROM spans GROUP BY trace_id
    ON CONFLICT (trace_id) DO NOTHING;
INSERT INTO span_runs (run_id, trace_id, last_ns)
    SELECT run_id, trace_id, MAX(start_ns) FROM spans WHERE run_id IS NOT NULL GROUP BY run_id, trace_id
    ON CONFLICT (run_id, trace_id) DO NOTHING;
DROP INDEX IF EXISTS spans_any_run_id;
DROP INDEX IF EXISTS spans_start;
CREATE INDEX IF NOT EXISTS spans_start_brin ON spans USING brin (start_ns);
DROP INDEX IF EXISTS spans_task_duration;
CREATE INDEX IF NOT EXISTS spans_task_only ON spans (pipeline, task, start_ns) INCLUDE (end_ns, status, name, is_run)
    WHERE task IS NOT NULL
"""

# SQLite v4: nothing changes (its primary key on (trace_id, span_id) already finds a trace in one probe);
# the step keeps both dialects' version numbers equal.
_SQLITE_NOTHING_V4 = "SELECT 1"

# SQLite v5: fewer indexes for the writer to keep. Each index costs every span write an insert, and a
# commit rewrites each index page it touched: (pipeline, task) put a run's ~30 step spans on ~30 random
# pages (its rows ordered by trace id within a task), the most costly part of a write. Now:
# - the task index is the covering duration index analysis used to add next to it (the same name and
#   columns, so ``maintenance.DURATION_INDEX`` finds it): it serves the per-task lookups, and its rows
#   follow start time within a task, so a task's new spans go on the page its last ones are on;
# - runs by start time: the same (is_run, start_ns) index as before, partial: over run spans only (as
#   PostgreSQL's ``spans_runs_recent``), not an entry for every span; spans by start time keep
#   ``spans_start``;
# - ``spans_run_id`` (run spans by run id) goes: ``spans_any_run_id`` (v3) finds a run id's ~30 spans
#   and the run span among them.
# The covering index is built from the rows here if analysis had not built it (a big file's first open
# after the upgrade takes a few seconds: one sort of the task columns).
_SQLITE_FEWER_INDEXES_V5 = """
CREATE INDEX IF NOT EXISTS spans_task_duration ON spans (pipeline, task, is_run, start_ns, end_ns, status, name);
DROP INDEX IF EXISTS spans_task;
CREATE INDEX IF NOT EXISTS spans_runs ON spans (is_run, start_ns) WHERE is_run = 1;
DROP INDEX IF EXISTS spans_run;
DROP INDEX IF EXISTS spans_run_id
"""

MIGRATIONS: dict[str, dict[str, list[str]]] = {
    "sqlite": {SPANS: [_SQLITE_SPANS_V1, _ANALYSIS_V2, _RUN_ID_ANY_V3, _SQLITE_NOTHING_V4, _SQLITE_FEWER_INDEXES_V5],
               HELD: [_HELD_V1.format(**_TYPES["sqlite"])]},
    "postgresql": {SPANS: [_PG_SPANS_V1, _ANALYSIS_V2, _RUN_ID_ANY_V3, _PG_TRACE_INDEX_V4],
                   HELD: [_HELD_V1.format(**_TYPES["postgresql"])]},
}


def latest(component: str, dialect: str = "sqlite") -> int:
    """The schema version this pipetrace writes for ``component`` on ``dialect``'s stores. The dialects
    may differ: a step one dialect needs and the other not is not added to both (a no-op step would
    make older pipetrace releases refuse stores it leaves unchanged; PostgreSQL stores are shared by
    hosts that upgrade one by one)."""
    return len(MIGRATIONS[dialect][component])


def pending(dialect: str, component: str, current: int, where: str) -> list[str]:
    """The migration scripts to run from ``current``; raises StoreVersionError for a newer store."""
    steps = MIGRATIONS[dialect][component]
    if current > len(steps):
        raise StoreVersionError(
            f"pipetrace: the store {where} has schema version {current} ({component}), newer than this "
            f"pipetrace knows (up to {len(steps)}); upgrade pipetrace on this host, or point it at "
            f"another store")
    return steps[current:]


def statements(script: str) -> list[str]:
    """A migration script split into statements (no semicolons inside our DDL)."""
    return [s.strip() for s in script.split(";") if s.strip()]
