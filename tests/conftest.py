"""Fixtures shared by every test folder: a pipetrace configured into a fresh store per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pipetrace
import pytest
import store_backends
from pipetrace.store import SpanRecord, SpanStore


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: reads the SQLite store file itself (not run on PostgreSQL)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    store_backends.parametrize(metafunc, Path(__file__).parent.parent)


@pytest.fixture(scope="session", autouse=True)
def store_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """sqlite, or postgresql with PIPETRACE_STORE set for the session (see tests/store_backends.py)."""
    yield from store_backends.backend(request)


class Traced:
    """A configured pipetrace with its own store; ``spans()`` flushes first."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.store = SpanStore(home / "traces.db")

    def flush(self) -> None:
        """Flush the local store's queue (a slow or dead OTLP backend must not hold the test up)."""
        assert pipetrace.force_flush(10, exporters=("store",)), "the store did not flush within 10 s"

    def spans(self, ident: str | None = None) -> list[SpanRecord]:
        self.flush()
        if ident is not None:
            return self.store.trace(ident)
        rows = self.store._query("SELECT DISTINCT trace_id FROM spans")  # noqa: SLF001
        out: list[SpanRecord] = []
        for (trace_id,) in rows:
            out.extend(self.store.trace(trace_id))
        return out

    def by_name(self, ident: str | None = None) -> dict[str, list[SpanRecord]]:
        out: dict[str, list[SpanRecord]] = {}
        for span in self.spans(ident):
            out.setdefault(span.name, []).append(span)
        return out


@pytest.fixture
def traced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Traced]:
    home = tmp_path / "pipetrace-home"
    monkeypatch.setenv("PIPETRACE_HOME", str(home))
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "PIPETRACE_EXPORTERS",
                "OTEL_SDK_DISABLED", "PIPETRACE_ENABLED", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
        monkeypatch.delenv(var, raising=False)
    pipetrace.configure(home=home, exporters="store", export_interval_s=0.05)
    yield Traced(home)
    pipetrace.shutdown(5)
