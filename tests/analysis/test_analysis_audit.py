"""Coverage audit: every planted defect is found, a clean store is clean."""

from __future__ import annotations

import json
import time
from pathlib import Path

from analysis_helpers import S, run, span, tid
from pipetrace import attributes as A
from pipetrace.analysis import audit
from pipetrace.analysis.audit import DANGLING, MISSING, NO_RUN_SPAN, NO_TASKS, ORPHAN, OUTSIDE, ROOTS
from pipetrace.cli import app
from pipetrace.identity import derive_run_span_id, format_span_id
from pipetrace.store import SpanStore
from typer.testing import CliRunner


def clean_runs(n: int, now: int, pipeline: str = "etl") -> list:
    records = []
    for i in range(n):
        t, t0 = tid(sum(map(ord, pipeline)) * 1000 + i), now - (n - i) * 3600 * S
        records += [run(t, 0, 60, pipeline=pipeline, run_id=f"r{i}", t0=t0),
                    span(t, "a", "1", "task a", 1, 20, pipeline=pipeline, run_id=f"r{i}", t0=t0,
                         attrs={A.QUEUED_MS: 100.0}),
                    span(t, "a1", "a", "batch a", 2, 10, pipeline=pipeline, run_id=f"r{i}", t0=t0),
                    span(t, "b", "1", "task b", 20, 60, pipeline=pipeline, run_id=f"r{i}", t0=t0),
                    span(t, "m", "b", "process q", 61.5, 62, kind="CONSUMER", pipeline=pipeline, run_id=f"r{i}",
                         t0=t0)]  # a consumer may outlive its parent: no finding
    return records


def in_progress(now: int) -> list:
    """A run still going (no run span yet): its task points at the run span to come, not an orphan."""
    t = tid(4242)
    run_sid = format_span_id(derive_run_span_id("python", "etl", "live"))
    rec = span(t, "a", None, "task a", 0, 5, pipeline="etl", run_id="live", t0=now - 60 * S)
    rec.parent_span_id = run_sid
    return [rec]


def test_clean_store_is_clean(tmp_path: Path) -> None:
    now = time.time_ns()
    store = SpanStore(tmp_path / "traces.db")
    store.write(clean_runs(20, now) + clean_runs(10, now, "reports") + in_progress(now))
    report = audit(store, now_ns=now, sources={})
    assert report.clean, report.findings
    assert report.traces == 31 and report.runs == 30 and report.in_progress == 1
    assert {p: c.percent for p, c in report.coverage.items()} == {"etl": 100.0, "reports": 100.0}


def test_every_planted_defect_is_found(tmp_path: Path) -> None:
    now = time.time_ns()
    store = SpanStore(tmp_path / "traces.db")
    records = clean_runs(20, now)
    t0 = now - 3600 * S
    orphan, roots, outside, no_tasks, missing, stale = (tid(9001 + i) for i in range(6))
    records += [run(orphan, 0, 60, run_id="o", t0=t0), span(orphan, "a", "1", "task a", 0, 30, run_id="o", t0=t0,
                                                             pipeline="etl"),
                span(orphan, "b", "1", "task b", 30, 60, run_id="o", t0=t0, pipeline="etl"),
                span(orphan, "x", "dead", "batch b", 31, 32, run_id="o", t0=t0, pipeline="etl")]
    records += [run(roots, 0, 60, run_id="r", pipeline="etl", t0=t0),
                span(roots, "a", "1", "task a", 0, 30, pipeline="etl", run_id="r", t0=t0),
                span(roots, "b", "1", "task b", 30, 60, pipeline="etl", run_id="r", t0=t0),
                span(roots, "z", None, "stray", 0, 1, pipeline="etl", run_id="r", t0=t0)]
    records += [run(outside, 0, 60, run_id="w", pipeline="etl", t0=t0),
                span(outside, "a", "1", "task a", 0, 30, pipeline="etl", run_id="w", t0=t0),
                span(outside, "b", "1", "task b", 30, 65, pipeline="etl", run_id="w", t0=t0)]  # 5 s past the run
    records += [run(no_tasks, 0, 60, run_id="n", pipeline="etl", t0=t0)]
    records += [run(missing, 0, 60, run_id="m", pipeline="etl", t0=t0),
                span(missing, "a", "1", "task a", 0, 30, pipeline="etl", run_id="m", t0=t0)]
    lost = span(stale, "a", "1", "task a", 0, 30, pipeline="etl", run_id="s", t0=now - 3 * 86400 * S)
    lost.parent_span_id = format_span_id(derive_run_span_id("python", "etl", "s"))  # its run span never came
    records.append(lost)
    store.write(records)
    report = audit(store, now_ns=now, sources={})
    found = {(f.kind, f.trace_id) for f in report.findings}
    assert found == {
        (ORPHAN, orphan), (ROOTS, roots), (OUTSIDE, outside),
        (NO_TASKS, no_tasks), (MISSING, missing), (NO_RUN_SPAN, stale),
    }
    detail = next(f for f in report.findings if f.kind == MISSING).detail
    assert detail == "tasks without spans: b"
    cov = report.coverage["etl"]
    assert cov.runs == 24 and cov.expected == 48 and cov.traced == 45  # 2 + 1 task spans missing
    # the skew tolerance absorbs the 5 s overrun when it is wider
    assert (OUTSIDE, outside) not in {(f.kind, f.trace_id) for f in
                                               audit(store, now_ns=now, skew_ms=6000, sources={}).findings}


def test_dangling_data_links_are_found(tmp_path: Path) -> None:
    """A hand-off link must point at a stored span: in its own trace or another one; links without a
    pipetrace kind (other instrumentations') are not ours to judge."""
    now = time.time_ns()
    store = SpanStore(tmp_path / "traces.db")
    t0 = now - 3600 * S
    good, bad, other = tid(7001), tid(7002), tid(7003)
    records = [run(good, 0, 60, run_id="g", pipeline="etl", t0=t0),
               span(good, "a", "1", "task a", 0, 30, pipeline="etl", run_id="g", t0=t0),
               span(good, "b", "1", "task b", 30, 60, pipeline="etl", run_id="g", t0=t0, links=["a"])]
    records += [run(bad, 0, 60, run_id="d", pipeline="etl", t0=t0),
                span(bad, "a", "1", "task a", 0, 30, pipeline="etl", run_id="d", t0=t0),
                span(bad, "b", "1", "task b", 30, 60, pipeline="etl", run_id="d", t0=t0, links=["a", "dead"])]
    cross = span(other, "c", None, "consumer", 0, 1, pipeline="x", run_id="x", t0=t0)
    cross.links = [{"trace_id": good, "span_id": "a".rjust(16, "0"), "attributes": {A.LINK_KIND: "message"}},
                   {"trace_id": tid(1), "span_id": "f".rjust(16, "0"), "attributes": {"other": 1}}]
    records.append(cross)
    store.write(records)
    report = audit(store, now_ns=now, sources={})
    dangling = [f for f in report.findings if f.kind == DANGLING]
    assert [(f.trace_id, f.span_id, f.run_id) for f in dangling] == [(bad, "b".rjust(16, "0"), "d")]
    assert "xcom link to span " + "dead".rjust(16, "0") in dangling[0].detail
    assert report.counts()[DANGLING] == 1


def test_orchestrator_record_is_the_reference_when_available(tmp_path: Path) -> None:
    now = time.time_ns()
    store = SpanStore(tmp_path / "traces.db")
    store.write(clean_runs(5, now))

    def airflow_like(pipeline: str, run_id: str) -> list[str]:
        return ["a", "b", "cleanup"]  # the orchestrator knows a task no span was reported for

    report = audit(store, now_ns=now, sources={"python": airflow_like})
    assert report.coverage["etl"].source == "orchestrator"
    assert round(report.coverage["etl"].percent, 1) == 66.7
    assert {f.kind for f in report.findings} == {MISSING}
    assert all("cleanup" in f.detail for f in report.findings) and len(report.findings) == 5


def test_cli_audit(tmp_path: Path, monkeypatch) -> None:
    now = time.time_ns()
    home = tmp_path / "home"
    store = SpanStore(home / "traces.db")
    store.write(clean_runs(5, now))
    monkeypatch.setenv("PIPETRACE_HOME", str(home))
    ok = CliRunner().invoke(app, ["audit"])
    assert ok.exit_code == 0, ok.output
    assert "clean" in ok.output and "100.0%" in ok.output
    t = tid(77)
    store.write([run(t, 0, 10, pipeline="etl", run_id="x", t0=now - 100 * S)])
    bad = CliRunner().invoke(app, ["audit", "--json"])
    assert bad.exit_code == 1
    doc = json.loads(bad.output)
    assert doc["counts"] == {"run-without-tasks": 1} and doc["findings"][0]["trace_id"] == t
