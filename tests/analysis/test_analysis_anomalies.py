"""Anomaly detection on synthetic histories with known ground truth (≥ 1,000 runs): precision/recall."""

from __future__ import annotations

import json
import time

import pytest
from pipetrace.analysis import BaselineConfig, detect
from pipetrace.analysis.anomalies import BASELINE_ATTR, SCORE_ATTR, stored
from pipetrace.analysis.synthetic import HOUR_NS, HistorySpec, generate
from pipetrace.cli import app
from pipetrace.store import SpanStore
from typer.testing import CliRunner


def seed(store: SpanStore, spec: HistorySpec) -> tuple[set[str], int]:
    truth: set[str] = set()
    records = []
    runs = 0
    for run, slow in generate(spec):
        records.extend(run.spans)
        truth |= slow
        runs += 1
    store.write(records)
    return truth, runs


@pytest.mark.parametrize("seed_value", [7, 11, 23])
def test_precision_and_recall_at_default_threshold(tmp_path, seed_value: int) -> None:
    store = SpanStore(tmp_path / "traces.db")
    spec = HistorySpec(pipelines=3, runs_per_pipeline=400, tasks=5, seed=seed_value)
    truth, runs = seed(store, spec)
    assert runs >= 1000 and len(truth) > 50
    found = detect(store, runs=False, save=False)
    got = {a.span_id for a in found}
    tp = len(got & truth)
    precision, recall = tp / len(got), tp / len(truth)
    print(f"\nseed {seed_value}: {runs} runs, {len(truth)} injected slow spans, {len(got)} flagged: "
          f"precision {precision:.3f} recall {recall:.3f} (threshold {BaselineConfig().threshold})")
    assert precision >= 0.9 and recall >= 0.9
    # seasonal pipeline_0 is 2x slower at night: those runs use an hour-of-day baseline, not alarms
    assert any(a.basis.startswith("hour:") for a in found)


def test_flags_are_stored_on_spans_and_listed_worst_first(tmp_path) -> None:
    store = SpanStore(tmp_path / "traces.db")
    truth, _ = seed(store, HistorySpec(pipelines=1, runs_per_pipeline=300, seasonal_pipelines=0, seed=3))
    found = detect(store)
    assert found == sorted(found, key=lambda a: a.score, reverse=True)
    worst = found[0]
    span = next(s for s in store.trace(worst.trace_id) if s.span_id == worst.span_id)
    assert span.attributes[SCORE_ATTR] == pytest.approx(worst.score, abs=1e-3)
    assert span.attributes[BASELINE_ATTR] == pytest.approx(worst.baseline_ms, abs=1e-3)
    again = stored(store)
    assert {a.span_id for a in again} == {a.span_id for a in found}
    assert {a.span_id for a in found if a.task is not None} >= truth & {a.span_id for a in found}
    runs_flagged = [a for a in found if a.task is None]
    assert all(a.name.startswith("run ") for a in runs_flagged)


def test_no_verdict_without_history_and_constant_tasks_do_not_flag_wobbles(tmp_path) -> None:
    store = SpanStore(tmp_path / "traces.db")
    seed(store, HistorySpec(pipelines=1, runs_per_pipeline=15, slow_rate=0.5, warmup_runs=0, seed=5))
    assert detect(store, save=False) == []  # 15 runs < min_history
    store2 = SpanStore(tmp_path / "b.db")
    seed(store2, HistorySpec(pipelines=1, runs_per_pipeline=200, sigma=(0.001, 0.002), slow_rate=0.0,
                             seasonal_pipelines=0, seed=5))
    assert detect(store2, save=False) == []  # MAD ~0, floored: 0.5 % noise is no anomaly


def test_cli_since_window(tmp_path, monkeypatch) -> None:
    home = tmp_path / "home"
    store = SpanStore(home / "traces.db")
    now = time.time_ns()
    spec = HistorySpec(pipelines=2, runs_per_pipeline=300, seasonal_pipelines=0, slow_rate=0.03, seed=9,
                       start_ns=now - 300 * HOUR_NS)
    seed(store, spec)
    monkeypatch.setenv("PIPETRACE_HOME", str(home))
    result = CliRunner().invoke(app, ["anomalies", "--since", "48h", "--json", "--limit", "500"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert rows and all(r["start"] >= (now - 49 * HOUR_NS) / 1e9 for r in rows)
    assert all(len(r["trace_id"]) == 32 for r in rows)
    everything = detect(store, save=False)
    assert len(everything) > len(rows)
    text = CliRunner().invoke(app, ["anomalies", "--since", "48h"])
    assert text.exit_code == 0 and "anomalies since 48h" in text.output
    assert CliRunner().invoke(app, ["anomalies", "--since", "yesterday"]).exit_code == 2
