"""Run the store-backed tests on both backends: SQLite (the default) and the loopback PostgreSQL.

Tests in ``PARAMETRIZED`` get a session-scoped ``store_backend`` parameter. For ``postgresql`` the
session sets ``PIPETRACE_STORE`` (inherited by every subprocess the tests start) to a URL whose schema
has a ``*``: each ``PIPETRACE_HOME`` gets its own fresh schema on the shared server, so tests stay as
isolated as with one SQLite file per home. Every schema of the session is dropped at the end.
A test that reads the SQLite file itself is marked ``@pytest.mark.sqlite_only``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_URL = os.environ.get("PIPETRACE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PARAMETRIZED = ("tests/analysis/", "tests/sampling/", "tests/ui/test_payload.py", "tests/ui/test_server.py",
                "tests/ui/test_viewer.py", "tests/ui/test_big_run.py", "tests/ui/test_report.py",
                "tests/core/test_store.py", "tests/core/test_store_layer.py", "tests/core/test_cli.py")
BACKENDS = [b for b in os.environ.get("PIPETRACE_TEST_BACKENDS", "sqlite,postgresql").split(",") if b]


def parametrize(metafunc: pytest.Metafunc, root: Path) -> None:
    if "store_backend" not in metafunc.fixturenames:
        return
    rel = Path(metafunc.definition.fspath).relative_to(root).as_posix()
    if any(rel.startswith(p) for p in PARAMETRIZED):
        backends = BACKENDS
        if metafunc.definition.get_closest_marker("sqlite_only"):
            backends = [b for b in BACKENDS if b == "sqlite"]
        metafunc.parametrize("store_backend", backends, indirect=True, scope="session")


def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    name = getattr(request, "param", "sqlite")
    if name != "postgresql":
        yield name
        return
    import psycopg

    prefix = f"pt_t{uuid.uuid4().hex[:8]}_"
    previous = os.environ.get("PIPETRACE_STORE")
    os.environ["PIPETRACE_STORE"] = f"{PG_URL}?schema={prefix}*"
    try:
        yield name
    finally:
        if previous is None:
            os.environ.pop("PIPETRACE_STORE", None)
        else:
            os.environ["PIPETRACE_STORE"] = previous
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            for (schema,) in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
                                          (prefix.replace("_", r"\_") + "%",)).fetchall():
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
