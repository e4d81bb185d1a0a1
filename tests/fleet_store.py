"""Helpers for fleet tests: a fresh schema on the shared loopback PostgreSQL, a "host"'s environment,
the pipetrace CLI run from one host's home, and a reader of the fleet store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

WORKER = str(Path(__file__).parent / "fleet_worker.py")
SHARED_PG = os.environ.get("PIPETRACE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def fresh_schema(prefix: str) -> Iterator[str]:
    """A schema name of this test only on the shared server; the schema is dropped afterwards."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        with psycopg.connect(SHARED_PG, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def store_url(schema: str, server: str = SHARED_PG) -> str:
    return f"{server}?schema={schema}"


def host_env(home: Path, store: str, **extra: str) -> dict[str, str]:
    """This environment without any pipetrace/OTel setting, then one host's home and the fleet store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPETRACE_"))}
    env.update(PIPETRACE_HOME=str(home), PIPETRACE_STORE=store, **extra)
    return env


def cli(home: Path, store: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """``pipetrace ARGS`` as run on the host whose home is ``home``."""
    return subprocess.run([sys.executable, "-m", "pipetrace", *args], env=host_env(home, store, COLUMNS="250", **extra),
                          capture_output=True, text=True, timeout=120)


def open_store(store: str, home: Path) -> Any:
    """A SpanStore on the fleet store ``store`` (close it when done)."""
    from pipetrace.store import SpanStore
    from pipetrace.store.postgres import PostgresBackend
    from pipetrace.store.target import parse

    return SpanStore(home / "traces.db", backend=PostgresBackend(parse(store)))


def all_traces(store: str, home: Path) -> dict[str, list[Any]]:
    """Every trace in the fleet store, trace id → its spans."""
    reader = open_store(store, home)
    try:
        return {tid: reader.trace(tid) for (tid,) in reader._query("SELECT DISTINCT trace_id FROM spans")}  # noqa: SLF001
    finally:
        reader.close()


def count(store: str, home: Path) -> int:
    """Spans in the fleet store."""
    reader = open_store(store, home)
    try:
        return int(reader.count())
    finally:
        reader.close()


def faulted_run(store: str, home: Path, n: int, inject: Callable[[], None], recover: Callable[[], None],
                hold_s: float = 0.0, **env: str) -> tuple[dict[str, Any], str]:
    """One host (``fleet_worker.py fault``): phase 0 healthy, ``inject``, phase 1 under the fault (held
    ``hold_s`` more), ``recover``, phase 2, then the buffer drained. (its JSON result, its stderr)"""
    go = home.parent / f"{home.name}-go"
    go.mkdir()
    proc = subprocess.Popen([sys.executable, WORKER, "fault", str(home), str(n), str(go)],
                            env=host_env(home, store, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "phase 0"
        inject()
        (go / "go1").touch()
        assert proc.stdout.readline().strip() == "phase 1"
        time.sleep(hold_s)
        recover()
        (go / "go2").touch()
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1]), err
