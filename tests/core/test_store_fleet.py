"""The PostgreSQL fleet store: off the task's path when the server dies, one tail decision per run across
hosts, one whole run readable from any host. Hosts are separate processes with separate PIPETRACE_HOMEs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fleet_store import SHARED_PG, WORKER, cli, count, faulted_run, fresh_schema, host_env
from private_pg import PrivatePostgres


@pytest.fixture
def shared_schema() -> Iterator[str]:
    """A fresh schema on the shared loopback server, dropped afterwards."""
    with fresh_schema("pt_fleet") as name:
        yield name


@pytest.mark.slow
def test_postgres_stopped_mid_run_tasks_unaffected_and_every_span_arrives(tmp_path: Path) -> None:
    pg = PrivatePostgres()
    try:
        pg.start()
        store = f"{pg.url}?schema=fault"
        home, n = tmp_path / "home", 300
        # the server dies between phases 0 and 1; phase 1 runs with it down
        result, err = faulted_run(store, home, n, pg.stop, pg.start)
        assert result["left"] == 0, (result, err[-3000:].splitlines())
        assert result["buffer"]["buffered"] >= n, result  # phase 1 waited in buffer.db
        assert result["p50_ms"] < 5, result  # the per-task promise holds while the store is down
        assert count(store, home) == 3 * n + 1
        assert "s3cr3t" not in err
        assert "buffering them in" in err and err.count("buffering them in") == 1
    finally:
        pg.destroy()


def _host(mode: str, home: Path, store: str, endpoint: str, *args: object) -> subprocess.Popen[str]:
    env = host_env(home, store, PIPETRACE_EXPORTERS="store,otlp", OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
               PIPETRACE_TAIL_SAMPLING="1", PIPETRACE_SAMPLE_RATES="*=0.1")
    return subprocess.Popen([sys.executable, WORKER, mode, str(home), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _done(*procs: subprocess.Popen[str]) -> None:
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["flushed"], err


@pytest.mark.slow
def test_tail_sampling_across_hosts_keeps_every_failed_run_whole_once(tmp_path: Path, shared_schema: str) -> None:
    from otlp_receiver import OTLPReceiver
    from pipetrace.identity import RunIdentity
    from pipetrace.sampling import consistent

    runs, fail_every = 200, 10
    store = f"{SHARED_PG}?schema={shared_schema}"
    homes = [tmp_path / f"host{n}" for n in range(4)]
    with OTLPReceiver() as receiver:
        # hosts 1 and 3 run their task of every run; host 0 sees every run end and decides; host 2's
        # tasks arrive after the decisions (stragglers) and must follow them
        _done(_host("runs", homes[1], store, receiver.endpoint, 1, runs, fail_every),
              _host("runs", homes[3], store, receiver.endpoint, 3, runs, fail_every))
        _done(_host("ends", homes[0], store, receiver.endpoint, runs, fail_every))
        _done(_host("runs", homes[2], store, receiver.endpoint, 2, runs, fail_every))
        trace = {f"{RunIdentity('python', 'fleet', f'r{i}').trace_id:032x}": i for i in range(runs)}
        failed = {t for t, i in trace.items() if i % fail_every == 0}
        by_rate = {t for t in trace if consistent.keeps(int(t, 16), 0.1)}
        expected = (failed | by_rate)
        receiver.wait_for(len(expected) * 4, timeout_s=30)
        got: dict[str, list[str]] = {}
        for _, span in receiver.spans():
            got.setdefault(span.trace_id.hex(), []).append(span.name)
    assert failed <= set(got) and by_rate <= set(got)
    assert len(set(got) - expected) < runs * 0.1  # slower-than-p95 runs may be kept too, nothing else
    whole = ["run fleet", "task task-h1", "task task-h2", "task task-h3"]
    broken = {trace[t]: sorted(names) for t, names in got.items() if sorted(names) != whole}
    assert broken == {}  # every exported run whole, every span exactly once (no run exported twice)

    # the same run, whole, from any host's home; the audit of the fleet store finds nothing missing
    for home in homes[:3]:
        shown = cli(home, store, "show", "r10")
        assert shown.returncode == 0, shown.stderr
        assert all(name.split(" ", 1)[1] in shown.stdout for name in whole[1:]), shown.stdout
    listed = cli(homes[2], store, "runs", "--limit", "500", "--json")
    assert listed.returncode == 0, listed.stderr
    assert len([r for r in json.loads(listed.stdout) if r["pipeline"] == "fleet"]) == runs
    audit = cli(homes[1], store, "audit", "--json")
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_doctor_reports_backend_schema_version_and_reachability_without_the_password(
        tmp_path: Path, shared_schema: str) -> None:
    home = tmp_path / "home"
    base = SHARED_PG.replace("postgres@", "postgres:s3cr3t-pw@")
    ok = cli(home, f"{base}?schema={shared_schema}", "doctor")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    from pipetrace.store import schema

    assert "store exporter: postgresql postgresql://postgres:***@" in ok.stdout
    assert f"schema version {schema.latest(schema.SPANS, 'postgresql')}" in ok.stdout
    assert "reachable" in ok.stdout and "s3cr3t-pw" not in ok.stdout + ok.stderr
    assert "store = 'postgresql://postgres:***@" in ok.stdout  # the effective-configuration line too
    down = cli(home, f"postgresql://postgres:s3cr3t-pw@127.0.0.1:9/postgres?schema={shared_schema}", "doctor")
    assert down.returncode == 1 and "unreachable" in down.stdout
    assert "s3cr3t-pw" not in down.stdout + down.stderr


def test_a_postgres_store_from_a_newer_pipetrace_fails_with_a_clear_message(tmp_path: Path,
                                                                            shared_schema: str) -> None:
    import psycopg
    from pipetrace.store import SpanStore, schema
    from pipetrace.store.postgres import PostgresBackend
    from pipetrace.store.target import parse

    url = f"{SHARED_PG}?schema={shared_schema}"
    SpanStore(tmp_path / "traces.db", backend=PostgresBackend(parse(url))).count()
    with psycopg.connect(SHARED_PG, autocommit=True) as conn:
        conn.execute(f"UPDATE {shared_schema}.pipetrace_schema SET version=7 WHERE component='spans'")
    with pytest.raises(schema.StoreVersionError, match="schema version 7 .*newer than this pipetrace"):
        SpanStore(tmp_path / "traces.db", backend=PostgresBackend(parse(url))).count()


def _store_over_days(tmp_path: Path, schema_name: str, days: int, per_day: int) -> tuple[Any, Any, int]:
    """(backend, store, today): one trace a day for ``days`` days back (trace d + 1 on day today - d),
    ``per_day`` spans each, in the schema's own day partitions."""
    from pipetrace.store import SpanRecord, SpanStore
    from pipetrace.store.postgres import DAY_NS, PostgresBackend
    from pipetrace.store.target import parse

    backend = PostgresBackend(parse(f"{SHARED_PG}?schema={schema_name}"))
    store = SpanStore(tmp_path / "traces.db", backend=backend)
    today = time.time_ns() // DAY_NS
    store.write([SpanRecord(f"{d + 1:032x}", f"{n:016x}", None, "task x", "INTERNAL", (today - d) * DAY_NS + n,
                            (today - d) * DAY_NS + n + 10) for d in range(days) for n in range(1, per_day + 1)])
    return backend, store, today


def test_retention_drops_whole_day_partitions(tmp_path: Path, shared_schema: str) -> None:
    from pipetrace.store import SpanRecord, maintenance
    from pipetrace.store.postgres import DAY_NS

    backend, store, today = _store_over_days(tmp_path, shared_schema, 4, 5)
    parts = lambda: {r[0] for r in store._query(  # noqa: E731, SLF001
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid=i.inhrelid JOIN pg_class p "
        "ON p.oid=i.inhparent JOIN pg_namespace n ON n.oid=p.relnamespace WHERE p.relname='spans' AND n.nspname=?",
        (shared_schema,))}
    assert len(parts()) == 4
    assert maintenance.drop_before(store, (today - 1) * DAY_NS) == 10  # the two oldest days, whole
    assert parts() == {backend.partition_name(today), backend.partition_name(today - 1)}
    assert store.count() == 10
    store.write([SpanRecord("f" * 32, "1" * 16, None, "late", "INTERNAL", (today - 3) * DAY_NS, (today - 3) * DAY_NS)])
    assert store.count() == 11  # a late span for a dropped day gets its partition back


def test_a_forked_child_writes_on_its_own_connection_and_leaves_the_parents_alone(
        tmp_path: Path, shared_schema: str) -> None:
    import gc

    from pipetrace.store import SpanRecord, SpanStore
    from pipetrace.store.postgres import PostgresBackend
    from pipetrace.store.target import parse

    store = SpanStore(tmp_path / "traces.db", backend=PostgresBackend(parse(f"{SHARED_PG}?schema={shared_schema}")))
    t0 = time.time_ns()
    store.write([SpanRecord("a" * 32, "1" * 16, None, "parent", "INTERNAL", t0, t0)])
    pid = os.fork()
    if pid == 0:  # the child: like a prefork worker, writes through the inherited store object
        code = 1
        try:
            store.write([SpanRecord("a" * 32, "2" * 16, None, "child", "INTERNAL", t0, t0)])
            gc.collect()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    store.write([SpanRecord("a" * 32, "3" * 16, None, "parent again", "INTERNAL", t0, t0)])
    assert sorted(s.name for s in store.trace("a" * 32)) == ["child", "parent", "parent again"]
    store.close()


def test_only_one_process_at_a_time_releases_a_decided_trace(tmp_path: Path, shared_schema: str) -> None:
    from pipetrace.store.held import HeldStore
    from pipetrace.store.postgres import PostgresBackend
    from pipetrace.store.schema import HELD
    from pipetrace.store.target import parse

    target = parse(f"{SHARED_PG}?schema={shared_schema}")
    a, b = (HeldStore(tmp_path / "tail.db", backend=PostgresBackend(target, component=HELD)) for _ in range(2))
    with a.claim("t1") as first:
        with b.claim("t1") as second, b.claim("t2") as other:
            assert first and not second and other  # the same trace is busy elsewhere; another is not
    with b.claim("t1") as again:
        assert again  # released with the first export
    a.close()
    b.close()


def test_beyond_the_buffer_bound_spans_are_dropped_counted_and_logged_once(tmp_path: Path, caplog) -> None:
    from pipetrace.store import SpanRecord, SpanStore
    from pipetrace.store.buffer import BufferedWriter
    from pipetrace.store.postgres import PostgresBackend
    from pipetrace.store.sqlite import _row
    from pipetrace.store.target import parse

    down = PostgresBackend(parse("postgresql://postgres:s3cr3t-pw@127.0.0.1:9/postgres?schema=nowhere"))
    writer = BufferedWriter(SpanStore(tmp_path / "traces.db", backend=down), max_spans=10)
    t0 = time.time_ns()
    with caplog.at_level("WARNING", logger="pipetrace.store"):
        for batch in range(5):
            writer.write_rows([_row(SpanRecord("b" * 32, f"{batch * 5 + n:016x}", None, "x", "INTERNAL", t0, t0))
                               for n in range(5)])
    assert writer.buffered == 10 and writer.dropped == 15
    assert SpanStore.local(tmp_path / "buffer.db").count() == 10
    full = [r for r in caplog.records if "buffer" in r.getMessage() and "full" in r.getMessage()]
    assert len(full) == 1 and "s3cr3t-pw" not in caplog.text


def test_a_v3_postgres_store_upgrades_in_place_to_the_trace_table(tmp_path: Path, shared_schema: str) -> None:
    """A store made by the release before v4 (spans, no span_traces) is migrated when opened: the trace
    and run tables are filled from the stored spans, and lookups find the old traces."""
    import psycopg
    from pipetrace.store import SpanStore, schema
    from pipetrace.store.postgres import DAY_NS, PostgresBackend
    from pipetrace.store.target import parse

    today = time.time_ns() // DAY_NS
    with psycopg.connect(SHARED_PG, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {shared_schema}")
        conn.execute(f"SET search_path TO {shared_schema}")
        conn.execute(schema.VERSION_TABLE)
        for script in schema.MIGRATIONS["postgresql"][schema.SPANS][:3]:
            for stmt in schema.statements(script):
                conn.execute(stmt)
        for d in (today - 2, today - 1):
            conn.execute(f"CREATE TABLE spans_{d:06d} PARTITION OF spans FOR VALUES FROM ({d * DAY_NS}) "
                         f"TO ({(d + 1) * DAY_NS})")
        for n, d in enumerate((today - 2, today - 1)):
            conn.execute("INSERT INTO spans (trace_id, span_id, name, kind, start_ns, end_ns, status, run_id, "
                         "is_run, attributes, events, links, resource, scope) VALUES (%s, %s, 'run p', 'SERVER', "
                         "%s, %s, 'OK', 'old-run', 1, '{}', '[]', '[]', '{}', 'x')",
                         ("0e" * 16, f"{n + 1:016x}", d * DAY_NS + 5, d * DAY_NS + 9))
        conn.execute("INSERT INTO pipetrace_schema VALUES ('spans', 3)")
    store = SpanStore(tmp_path / "traces.db", backend=PostgresBackend(parse(f"{SHARED_PG}?schema={shared_schema}")))
    assert len(store.trace("0e" * 16)) == 2 and store.resolve("old-run") == "0e" * 16
    assert store.backend.schema_version() == schema.latest(schema.SPANS, "postgresql") == 4
    indexes = {r[0] for r in store._query("SELECT indexname FROM pg_indexes WHERE schemaname=? "  # noqa: SLF001
                                          "AND tablename='spans'", (shared_schema,))}
    assert "spans_any_run_id" not in indexes and {"spans_start_brin", "spans_task_only"} <= indexes
    store.close()


def test_one_trace_is_read_from_its_own_day_partition_only(tmp_path: Path, shared_schema: str) -> None:
    backend, store, today = _store_over_days(tmp_path, shared_schema, 8, 3)
    trace_id = f"{4:032x}"
    extra, bounds = backend.trace_range(trace_id) or ("", ())
    plan = "\n".join(r[0] for r in store._query(  # noqa: SLF001
        f"EXPLAIN SELECT * FROM spans WHERE trace_id=?{extra}", (trace_id, *bounds)))
    assert plan.count(" on spans_") == 1 and backend.partition_name(today - 3) in plan, plan
    assert len(store.trace(trace_id)) == 3
    store.close()
