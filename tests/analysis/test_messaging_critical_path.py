"""Critical path through messaging (publish → queue wait → task → next publish) on hand-built Celery
traces of each canvas shape, with known answers: from the analysis API, the CLI (by run id, before and
after the run span exists) and the viewer's trace document (one implementation behind all three)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from analysis_helpers import T0, S, span, tid
from pipetrace import attributes as A
from pipetrace.analysis import critical_path
from pipetrace.cli import app
from pipetrace.store import SpanRecord, SpanStore
from pipetrace.ui.payload import trace_document
from typer.testing import CliRunner

CELERY = {A.SYSTEM: "celery"}


def send(t: str, sid: str, parent: str | None, start: float, end: float, run_id: str) -> SpanRecord:
    return span(t, sid, parent, "send q", start, end, kind="PRODUCER", attrs=dict(CELERY), run_id=run_id)


def task(t: str, sid: str, sent_by: str, name: str, start: float, end: float, run_id: str, *,
         queued_ms: float = 50.0, links: list[str] | None = None) -> SpanRecord:
    return span(t, sid, sent_by, f"task {name}", start, end, kind="CONSUMER", links=links, run_id=run_id,
                attrs={**CELERY, A.QUEUED_MS: queued_ms, A.TASK_RESULT: "success"})


def run_span(t: str, end: float, run_id: str) -> SpanRecord:
    return span(t, "f" * 16, None, "run p", 0, end, kind="SERVER", run_id=run_id,
                attrs={**CELERY, A.PIPELINE_RESULT: "success"})


def chain_trace() -> tuple[list[SpanRecord], list[tuple[str, str, float, float]]]:
    t, r = tid(101), "chain-run"
    spans = [send(t, "s1", None, 0.0, 0.01, r), task(t, "t1", "s1", "add", 0.05, 1.0, r),
             send(t, "s2", "t1", 0.9, 0.91, r), task(t, "t2", "s2", "mul", 0.95, 2.0, r),
             send(t, "s3", "t2", 1.9, 1.91, r), task(t, "t3", "s3", "add2", 1.95, 3.0, r)]
    expected = [("send q", "self", 0.0, 0.01), ("task add", "queue", 0.01, 0.05), ("task add", "self", 0.05, 0.9),
                ("send q", "self", 0.9, 0.91), ("task mul", "queue", 0.91, 0.95), ("task mul", "self", 0.95, 1.9),
                ("send q", "self", 1.9, 1.91), ("task add2", "queue", 1.91, 1.95), ("task add2", "self", 1.95, 3.0)]
    return spans, expected


def group_trace() -> tuple[list[SpanRecord], list[tuple[str, str, float, float]]]:
    t, r = tid(102), "group-run"
    spans = [span(t, "b", None, "batch group", 0.0, 0.03, attrs=dict(CELERY), run_id=r),
             send(t, "s1", "b", 0.0, 0.01, r), send(t, "s2", "b", 0.01, 0.02, r), send(t, "s3", "b", 0.02, 0.03, r),
             task(t, "t1", "s1", "add", 0.05, 0.5, r), task(t, "t2", "s2", "add", 0.06, 1.0, r),
             task(t, "t3", "s3", "add", 0.07, 0.6, r)]
    # the slowest member decides; before its publish, the producer published the members in turn
    expected = [("send q", "self", 0.0, 0.01), ("send q", "self", 0.01, 0.02), ("task add", "queue", 0.02, 0.06),
                ("task add", "self", 0.06, 1.0)]
    return spans, expected


def chord_trace() -> tuple[list[SpanRecord], list[tuple[str, str, float, float]]]:
    t, r = tid(103), "chord-run"
    spans = [span(t, "b", None, "batch chord", 0.0, 0.02, attrs=dict(CELERY), run_id=r),
             send(t, "s1", "b", 0.0, 0.01, r), send(t, "s2", "b", 0.01, 0.02, r),
             task(t, "t1", "s1", "add", 0.05, 0.5, r), task(t, "t2", "s2", "add", 0.06, 1.0, r),
             send(t, "sb", "t2", 0.95, 0.96, r),  # the header task that finished last publishes the body
             task(t, "tb", "sb", "tsum", 1.0, 1.5, r, links=["t1", "t2"])]
    # the body links to both header tasks; t1 ended long before the body's publish, t2 published it
    expected = [("send q", "self", 0.0, 0.01), ("send q", "self", 0.01, 0.02), ("task add", "queue", 0.02, 0.06),
                ("task add", "self", 0.06, 0.95), ("send q", "self", 0.95, 0.96), ("task tsum", "queue", 0.96, 1.0),
                ("task tsum", "self", 1.0, 1.5)]
    return spans, expected


def nested_chord_trace() -> tuple[list[SpanRecord], list[tuple[str, str, float, float]]]:
    t, r = tid(104), "nested-run"
    spans = [span(t, "b", None, "batch chord", 0.0, 0.03, attrs=dict(CELERY), run_id=r),
             send(t, "sa1", "b", 0.0, 0.01, r), send(t, "sa2", "b", 0.01, 0.02, r), send(t, "sx", "b", 0.02, 0.03, r),
             task(t, "ta1", "sa1", "a", 0.05, 0.4, r), task(t, "ta2", "sa2", "a", 0.06, 0.8, r),
             task(t, "tx", "sx", "x", 0.07, 0.9, r),
             send(t, "sib", "ta2", 0.75, 0.76, r), task(t, "tib", "sib", "inner", 0.8, 1.2, r, links=["ta1", "ta2"]),
             send(t, "sob", "tib", 1.15, 1.16, r), task(t, "tob", "sob", "outer", 1.2, 1.5, r, links=["tib", "tx"])]
    expected = [("send q", "self", 0.0, 0.01), ("send q", "self", 0.01, 0.02), ("task a", "queue", 0.02, 0.06),
                ("task a", "self", 0.06, 0.75), ("send q", "self", 0.75, 0.76), ("task inner", "queue", 0.76, 0.8),
                ("task inner", "self", 0.8, 1.15), ("send q", "self", 1.15, 1.16), ("task outer", "queue", 1.16, 1.2),
                ("task outer", "self", 1.2, 1.5)]
    return spans, expected


SHAPES = {"chain": chain_trace, "group": group_trace, "chord": chord_trace, "nested_chord": nested_chord_trace}


def steps(path: Any) -> list[tuple[str, str, float, float]]:
    return [(s.span.name, s.kind, round((s.start_ns - T0) / S, 3), round((s.end_ns - T0) / S, 3))
            for s in path.steps]


def _end(spans: list[SpanRecord]) -> float:
    return (max(s.end_ns for s in spans) - T0) / S


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("closed", [False, True], ids=["no-run-span", "run-span"])
def test_known_answer(shape: str, closed: bool) -> None:
    spans, expected = SHAPES[shape]()
    if closed:
        spans = [*spans, run_span(spans[0].trace_id, _end(spans), spans[0].run_id or "")]
    path = critical_path(spans)
    assert steps(path) == expected
    assert path.total_ns == max(s.end_ns for s in spans) - min(s.start_ns for s in spans)
    assert abs(sum(path.share(s) for s in path.steps) - 1.0) < 1e-9  # the path covers the whole run


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_cli_and_viewer_by_run_id(shape: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spans, expected = SHAPES[shape]()
    run_id = spans[0].run_id or ""
    store = SpanStore(tmp_path / "traces.db")
    store.write(spans)
    monkeypatch.setenv("PIPETRACE_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["critical-path", run_id, "--json"])  # no run span yet: found by run id
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    got = [(s["name"], s["kind"], round((s["start_ns"] - T0) / S, 3), round((s["end_ns"] - T0) / S, 3))
           for s in doc["steps"]]
    assert got == expected
    viewer = trace_document(store, run_id)
    assert viewer is not None
    on_path = [sid for sid in viewer["critical"] if sid != "0" * 16]
    assert on_path == [sid for sid in doc["span_ids"] if sid != "0" * 16]
    named = {s.span_id: s.name for s in spans}
    assert [named[sid] for sid in on_path if named[sid].startswith("task ")] == list(
        dict.fromkeys(name for name, kind, _, _ in expected if name.startswith("task ")))
    for command in ("show", "export"):
        assert CliRunner().invoke(app, [command, run_id]).exit_code == 0
    report = CliRunner().invoke(app, ["report", run_id, "-o", str(tmp_path / "run.html")])
    assert report.exit_code == 0 and (tmp_path / "run.html").stat().st_size > 0
    store.close()
