"""Dagster test helpers: instrumentation on for the test, examples importable, span trees as text."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipetrace.store import SpanRecord

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
    """The span tree as indented text: ``name [attr=value ...]``, siblings sorted, so a test can
    compare a whole trace at once."""
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[SpanRecord]] = {}
    for s in spans:
        parent = s.parent_span_id if s.parent_span_id in ids else None
        children.setdefault(parent, []).append(s)

    def label(s: SpanRecord) -> str:
        extra = [f"{k}={s.attributes[k]}" for k in show if k in s.attributes]
        return " ".join([s.name, *extra])

    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=label):
            lines.append("  " * depth + label(s))
            walk(s.span_id, depth + 1)

    walk(None, 0)
    return "\n".join(lines)


def by_step(spans: list[SpanRecord]) -> dict[tuple[str, int], SpanRecord]:
    return {(s.attributes["dagster.step_key"], s.attributes.get("pipetrace.task.try_number", 1)): s
            for s in spans if s.name.startswith("task ")}
