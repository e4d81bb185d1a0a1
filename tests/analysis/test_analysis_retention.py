"""Retention on a seeded store: exactly the expected runs remain; runs in progress are never removed."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

from analysis_helpers import S, run, span, tid
from pipetrace.analysis import RetentionPolicy, prune
from pipetrace.analysis.retention import SAMPLED_ATTR
from pipetrace.cli import app
from pipetrace.store import SpanStore
from typer.testing import CliRunner

DAY = 86400


def seeded(path: Path, now: int) -> dict[str, str]:
    """name -> trace id; each run: run span + 2 tasks, ended ``age`` days ago."""
    store = SpanStore(path)
    plan = {
        "ok-2d": (2, "success", {}), "ok-13d": (13, "success", {}), "ok-15d": (15, "success", {}),
        "ok-200d": (200, "success", {}), "failed-30d": (30, "failure", {}), "failed-89d": (89, "failure", {}),
        "failed-91d": (91, "failure", {}), "timeout-100d": (100, "timeout", {}),
        "sampled-12h": (0.5, "success", {SAMPLED_ATTR: False}), "sampled-2d": (2, "success", {SAMPLED_ATTR: False}),
        "kept-2d": (2, "success", {SAMPLED_ATTR: True}),
    }
    ids: dict[str, str] = {}
    records = []
    for n, (name, (age, result, attrs)) in enumerate(plan.items()):
        t = tid(100 + n)
        t0 = now - int((age * DAY + 60) * S)
        records += [run(t, 0, 60, result=result, run_id=name, attrs=attrs, t0=t0),
                    span(t, "a", "1", "task a", 0, 30, run_id=name, t0=t0),
                    span(t, "b", "1", "task b", 30, 60, run_id=name, t0=t0)]
        ids[name] = t
    # in progress for a year: spans but no run span yet
    t = tid(900)
    records.append(span(t, "a", "1", "task a", 0, 30, run_id="running", t0=now - 365 * DAY * S))
    ids["in-progress-365d"] = t
    # a parent run (old) that triggered a child run (recent) in the same trace: kept for the child
    t = tid(901)
    old = now - 30 * DAY * S
    records += [run(t, 0, 60, run_id="parent", t0=old),
                span(t, "c", "1", "task trigger", 0, 60, run_id="parent", t0=old),
                run(t, 0, 60, run_id="child", sid="2", pipeline="child", parent="c", t0=now - DAY * S)]
    ids["parent-child"] = t
    store.write(records)
    store.close()
    return ids


def remaining(path: Path) -> set[str]:
    store = SpanStore(path)
    return {r[0] for r in store._query("SELECT DISTINCT trace_id FROM spans")}  # noqa: SLF001


def test_tiers_in_progress_and_archive(tmp_path: Path) -> None:
    now = time.time_ns()
    db = tmp_path / "traces.db"
    ids = seeded(db, now)
    store = SpanStore(db)
    dry = prune(store, RetentionPolicy(), now_ns=now, dry_run=True)
    assert dry.traces == 5 and remaining(db) == set(ids.values())
    report = prune(store, RetentionPolicy(), now_ns=now, archive_dir=tmp_path / "archive")
    expect_gone = {"ok-15d", "ok-200d", "failed-91d", "timeout-100d", "sampled-2d"}
    assert remaining(db) == {t for name, t in ids.items() if name not in expect_gone}
    assert report.runs == 5 and report.traces == 5 and report.spans == 15
    assert report.by_tier == {"normal": 2, "failed": 2, "sampled-out": 1}
    assert report.freed_bytes > 0
    assert report.archive is not None
    with gzip.open(report.archive, "rt") as fh:
        docs = [json.loads(line) for line in fh]
    archived = {s["traceId"] for d in docs for rs in d["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]}
    assert archived == {ids[n] for n in expect_gone}
    # a second pass has nothing left to do; the run in progress survives even a zero-day policy
    assert prune(store, RetentionPolicy(), now_ns=now).traces == 0
    prune(store, RetentionPolicy(0, 0, 0), now_ns=now + 10**12)
    assert remaining(db) == {ids["in-progress-365d"]}


def test_cli_prune(tmp_path: Path, monkeypatch) -> None:
    now = time.time_ns()
    home = tmp_path / "home"
    ids = seeded(home / "traces.db", now)
    monkeypatch.setenv("PIPETRACE_HOME", str(home))
    out = CliRunner().invoke(app, ["prune", "--normal", "1d", "--failed", "60d", "--dry-run"])
    assert out.exit_code == 0, out.output
    assert "would remove 9 runs in 9 traces (3 failed, 5 normal, 1 sampled-out)" in out.output
    res = CliRunner().invoke(app, ["prune", "--normal", "1d", "--failed", "60d", "--vacuum", "--json"])
    doc = json.loads(res.output)
    assert doc["traces"] == 9 and doc["spans"] == 27 and doc["bytes_after"] <= doc["bytes_before"]
    assert remaining(home / "traces.db") == {ids[n] for n in ("failed-30d", "sampled-12h", "in-progress-365d",
                                                                           "parent-child")}
    bad = CliRunner().invoke(app, ["prune", "--normal", "soon"])
    assert bad.exit_code == 2


def test_prune_drops_the_days_that_hold_only_expired_runs_and_deletes_the_rest_per_trace(tmp_path: Path) -> None:
    """PostgreSQL drops whole day partitions before the first day with a kept trace; the expired runs on
    and after that day are deleted trace by trace. The same runs go on SQLite (row deletes only)."""
    now = time.time_ns()
    day_ns = DAY * S
    noon = lambda age: (now // day_ns - age) * day_ns + day_ns // 2  # noqa: E731 - mid-day: one day per run
    plan = {"ok-40d": (40, "success"), "ok-35d": (35, "success"), "ok-30d": (30, "success"),
            "failed-30d": (30, "failure"), "ok-20d": (20, "success"), "ok-2d": (2, "success")}
    store = SpanStore(tmp_path / "traces.db")
    ids: dict[str, str] = {}
    for n, (name, (age, result)) in enumerate(plan.items()):
        ids[name] = t = tid(300 + n)
        store.write([run(t, 0, 60, result=result, run_id=name, t0=noon(age)),
                     span(t, "a", "1", "task a", 0, 30, run_id=name, t0=noon(age)),
                     span(t, "b", "1", "task b", 30, 60, run_id=name, t0=noon(age))])

    def days() -> set[int]:
        if store.dialect != "postgresql":
            return set()
        return {int(r[0][len("spans_"):]) for r in store._query(  # noqa: SLF001
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid=i.inhrelid JOIN pg_class p "
            "ON p.oid=i.inhparent JOIN pg_namespace n ON n.oid=p.relnamespace WHERE p.relname='spans' "
            "AND n.nspname=current_schema()")}

    before = days()
    report = prune(store, RetentionPolicy(), now_ns=now)
    assert report.traces == 4 and report.spans == 12
    assert remaining(tmp_path / "traces.db") == {ids["failed-30d"], ids["ok-2d"]}
    assert store.resolve("ok-35d") is None and store.resolve("ok-20d") is None
    assert [s.name for s in store.trace("failed-30d")] == ["run p", "task a", "task b"]
    if store.dialect == "postgresql":
        today = now // day_ns
        assert before - days() == {today - 40, today - 35}  # dropped whole: no kept run on those days
        assert {today - 30, today - 20, today - 2} <= days()  # the kept run's day and later: row deletes
    store.close()
