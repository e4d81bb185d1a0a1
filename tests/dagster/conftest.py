"""Dagster test helpers: instrumentation on for the test, examples importable, span trees as text."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipetrace.store import SpanRecord
from span_tree import span_tree

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "example_dags" / "dagster"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))


@pytest.fixture
def instrumented(traced) -> Iterator[object]:  # noqa: ANN001 - the shared fixture from tests/conftest.py
    from pipetrace.integrations.dagster import instrument, uninstrument

    assert instrument()
    yield traced
    uninstrument()


def tree(spans: list[SpanRecord], show: tuple[str, ...] = ("dagster.step_key",)) -> str:
    """The span tree as indented text (see span_tree), showing the step keys."""
    return span_tree(spans, show)


def by_step(spans: list[SpanRecord]) -> dict[tuple[str, int], SpanRecord]:
    return {(s.attributes["dagster.step_key"], s.attributes.get("pipetrace.task.try_number", 1)): s
            for s in spans if s.name.startswith("task ")}
