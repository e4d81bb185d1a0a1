"""Airflow test set-up: one throwaway Airflow home per session (set before Airflow is imported),
a fresh pipetrace store per test, and helpers that turn stored spans into comparable trees."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _dagrun import airflow_env  # noqa: E402

_HOME = Path(tempfile.mkdtemp(prefix="pt-airflow-"))
os.environ.update(airflow_env(_HOME))
os.environ.pop("PIPETRACE_ENABLED", None)
os.environ.pop("AIRFLOW__TRACES__OTEL_ON", None)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    import _dagrun

    _dagrun.init_db()
    return _HOME


@pytest.fixture
def store(tmp_path: Path, airflow_db: Path) -> Iterator[Any]:
    """pipetrace configured to a store of this test only."""
    import pipetrace
    from pipetrace.store import SpanStore

    pipetrace.configure(home=str(tmp_path / "pt"), exporters="store")
    yield SpanStore(pipetrace.settings().store_path)
    pipetrace.force_flush(10)


def spans_of(store: Any, run_id: str) -> list[Any]:
    import pipetrace

    assert pipetrace.force_flush(10)
    return store.trace(run_id)


def by_name(spans: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for s in spans:
        out.setdefault(s.name, []).append(s)
    return out


def shape(spans: list[Any]) -> set[tuple[Any, ...]]:
    """(name, parent name, result, try, map index) for every span: the tree, ids left out."""
    names = {s.span_id: s.name for s in spans}
    return {
        (s.name, names.get(s.parent_span_id, "<root>" if s.parent_span_id is None else "<remote>"), s.result,
         s.attributes.get("pipetrace.task.try_number"), s.attributes.get("pipetrace.task.map_index"))
        for s in spans
    }


def link_targets(span: Any, spans: list[Any]) -> list[tuple[str, Any, str]]:
    """(target name, target map index, link kind) of each link, sorted."""
    index = {s.span_id: s for s in spans}
    out = []
    for lk in span.links:
        target = index[lk["span_id"]]
        assert lk["trace_id"] == target.trace_id
        out.append((target.name, target.attributes.get("pipetrace.task.map_index"),
                    lk["attributes"]["pipetrace.link.kind"]))
    return sorted(out, key=repr)
