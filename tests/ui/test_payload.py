"""The data behind the page: critical path, filters, embedding safety (no browser needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipetrace.analysis import critical_span_ids as critical_path
from pipetrace.store import SpanStore
from pipetrace.store.queries import spans_by_ids
from pipetrace.store.records import SpanRecord
from pipetrace.ui.page import embed_json
from pipetrace.ui.payload import runs_document, trace_document


def rec(span_id: str, parent: str | None, start: int, end: int) -> SpanRecord:
    """A span whose times are in milliseconds."""
    return SpanRecord("t" * 32, span_id, parent, span_id, "INTERNAL", start * 10**6, end * 10**6)


def test_critical_path_walks_back_from_the_end() -> None:
    spans = [rec("root", None, 0, 100), rec("a", "root", 0, 10), rec("b", "root", 5, 60), rec("c", "root", 12, 40),
             rec("d", "root", 62, 100), rec("d1", "d", 66, 70), rec("d2", "d", 65, 99)]
    # d ends last (inside it d2); before d starts, b ends last; a still runs when b starts, so it is
    # not what b waited for, and c ended under b.
    assert set(critical_path(spans)) == {"root", "d", "d2", "b"}
    assert critical_path([]) == []


def test_critical_path_clamps_children_that_outlive_the_parent() -> None:
    spans = [rec("root", None, 0, 50), rec("late", "root", 10, 80), rec("early", "root", 0, 9)]
    assert set(critical_path(spans)) == {"root", "late", "early"}


def test_trace_document_from_seeded_store(seeded: tuple[Path, dict[str, Any]]) -> None:
    home, data = seeded
    store = SpanStore(home / "traces.db")
    ev = data["events"][0]
    doc = trace_document(store, ev["trace_id"])
    assert doc is not None and doc["run"]["pipeline"] == "ingest_events" and doc["run"]["status"] == "success"
    key = f"{data['sales'][3]['trace_id']}:{data['sales'][3]['load']}"
    assert doc["linked"][key]["name"] == "task load" and doc["linked"][key]["run_id"] == "scheduled__03"
    live = trace_document(store, data["live"]["trace_id"])
    assert live is not None and live["run"]["in_progress"] and live["run"]["status"] == "running"
    assert trace_document(store, "nothing") is None
    found = spans_by_ids(store, [(ev["trace_id"], ev["consume"]), ("0" * 32, "1" * 16)])
    assert [s.span_id for s in found] == [ev["consume"]]
    store.close()


def test_runs_document_filters(seeded: tuple[Path, dict[str, Any]]) -> None:
    home, data = seeded
    store = SpanStore(home / "traces.db")
    assert len(runs_document(store)["runs"]) == 10
    slow = runs_document(store, min_ms=4000)["runs"]
    assert {r["pipeline"] for r in slow} == {"daily_sales"} and len(slow) == 6
    quick = runs_document(store, max_ms=1700)["runs"]
    assert {r["run_id"] for r in quick} == {"batch-0", "batch-1"}
    assert [r["run_id"] for r in runs_document(store, pipeline="ingest*", status="failure")["runs"]] == ["batch-1"]
    first = min(r["start"] for r in runs_document(store)["runs"])
    assert len(runs_document(store, until_s=first + 1)["runs"]) == 1
    store.close()


def test_embedded_json_cannot_end_the_script_element() -> None:
    value = {"name": "</script><script>alert(1)</script><!--", "sep": "a\u2028b", "amp": "&lt;"}
    text = embed_json(value)
    assert "</" not in text and "<!--" not in text and "\u2028" not in text and "&" not in text
    assert json.loads(text) == value
