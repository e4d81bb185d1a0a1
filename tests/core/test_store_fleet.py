"""The PostgreSQL fleet store: off the task's path when the server dies, one tail decision per run across
hosts, one whole run readable from any host. Hosts are separate processes with separate PIPETRACE_HOMEs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from private_pg import PrivatePostgres

WORKER = str(Path(__file__).parent.parent / "fleet_worker.py")
SHARED_PG = os.environ.get("PIPETRACE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _env(home: Path, store: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPETRACE_"))}
    env.update(PIPETRACE_HOME=str(home), PIPETRACE_STORE=store, **extra)
    return env


@pytest.fixture
def shared_schema() -> Iterator[str]:
    """A fresh schema on the shared loopback server, dropped afterwards."""
    import psycopg

    name = f"pt_fleet_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(SHARED_PG, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def _count(store_url: str, home: Path) -> int:
    from pipetrace.store import SpanStore
    from pipetrace.store.postgres import PostgresBackend
    from pipetrace.store.target import parse

    store = SpanStore(home / "traces.db", backend=PostgresBackend(parse(store_url)))
    try:
        return store.count()
    finally:
        store.close()


@pytest.mark.slow
def test_postgres_stopped_mid_run_tasks_unaffected_and_every_span_arrives(tmp_path: Path) -> None:
    pg = PrivatePostgres()
    try:
        pg.start()
        store = f"{pg.url}?schema=fault"
        home, go = tmp_path / "home", tmp_path / "go"
        go.mkdir()
        n = 300
        proc = subprocess.Popen([sys.executable, WORKER, "fault", str(home), str(n), str(go)],
                                env=_env(home, store), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "phase 0"
        pg.stop()  # the server dies between phases 0 and 1; phase 1 runs with it down
        (go / "go1").touch()
        assert proc.stdout.readline().strip() == "phase 1"
        assert (home / "buffer.db").exists()
        pg.start()
        (go / "go2").touch()
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        result = json.loads(out.strip().splitlines()[-1])
        assert result["left"] == 0, (result, err[-3000:].splitlines())
        assert result["p50_ms"] < 5, result  # the per-task promise holds while the store is down
        assert _count(store, home) == 3 * n + 1
        assert "s3cr3t" not in err
        assert "buffering them in" in err and err.count("buffering them in") == 1
    finally:
        pg.destroy()
