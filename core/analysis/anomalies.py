"""Anomalous spans and runs: each task attempt (and each run) scored against its own (pipeline, task)
baseline built only from what came before it; flags are stored and copied onto the span's attributes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..store import SpanStore
from ..store import maintenance as M
from .baselines import BaselineConfig, History, judge

SCORE_ATTR = "pipetrace.anomaly.score"
BASELINE_ATTR = "pipetrace.anomaly.baseline_ms"
RUN = "<run>"  # the task key of run spans in results


@dataclass
class Anomaly:
    trace_id: str
    span_id: str
    pipeline: str | None
    task: str | None  # None: the run itself
    name: str
    start_ns: int
    duration_ms: float
    baseline_ms: float
    score: float
    basis: str

    @property
    def ratio(self) -> float:
        return self.duration_ms / self.baseline_ms if self.baseline_ms else float("inf")

    def row(self, detected_ns: int) -> tuple[Any, ...]:
        return (self.trace_id, self.span_id, self.pipeline, self.task, self.name, self.start_ns,
                self.duration_ms, self.baseline_ms, self.score, self.basis, detected_ns)

    def to_json(self) -> dict[str, Any]:
        return {"trace_id": self.trace_id, "span_id": self.span_id, "pipeline": self.pipeline,
                "task": self.task, "name": self.name, "start": self.start_ns / 1e9,
                "duration_ms": round(self.duration_ms, 3), "baseline_ms": round(self.baseline_ms, 3),
                "ratio": round(self.ratio, 3), "score": round(self.score, 3), "basis": self.basis}


def _groups(rows: Sequence[tuple[Any, ...]]) -> Iterator[tuple[tuple[Any, Any], list[tuple[Any, ...]]]]:
    start = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i][:2] != rows[start][:2]:
            yield rows[start][:2], list(rows[start:i])
            start = i


def score_rows(rows: Sequence[tuple[Any, ...]], *, config: BaselineConfig, since_ns: int | None = None,
               is_run: bool = False) -> list[Anomaly]:
    """Anomalies among ``rows`` = ``(pipeline, task, trace_id, span_id, start_ns, end_ns, status, name)``
    sorted by (pipeline, task, start). Only rows starting at/after ``since_ns`` are judged; earlier ones
    only feed the baseline (the tail that can still matter: the recent window and seasonal buckets)."""
    keep_before = max(config.window, 24 * config.seasonal_window if config.seasonal else 0)
    found: list[Anomaly] = []
    for (pipeline, task), group in _groups(rows):
        history = History(config)
        if since_ns is not None:
            first = next((i for i, r in enumerate(group) if r[4] >= since_ns), len(group))
            for r in group[max(0, first - keep_before):first]:
                if r[6] != "ERROR":
                    history.add(r[4], (r[5] - r[4]) / 1e6)
            group = group[first:]
        for _, _, trace_id, span_id, start, end, status, name in group:
            duration = (end - start) / 1e6
            verdict = judge(history, start, duration)
            if verdict is not None:
                flagged, score, base = verdict
                if flagged:
                    found.append(Anomaly(trace_id, span_id, pipeline, None if is_run else task, name, start,
                                         duration, base.median_ms, score, base.basis))
            if status != "ERROR":
                history.add(start, duration)
    return found


def detect(store: SpanStore, *, since_ns: int | None = None, config: BaselineConfig | None = None,
           runs: bool = True, tasks: bool = True, save: bool = True,
           progress: Callable[[str], None] | None = None) -> list[Anomaly]:
    """Score task spans and run spans, store the flags (table + span attributes), worst first."""
    config = config or BaselineConfig()
    M.ensure_schema(store)
    found: list[Anomaly] = []
    if tasks:
        if progress:
            progress("scanning task spans")
        found += score_rows(M.duration_rows(store, runs=False), config=config, since_ns=since_ns)
    if runs:
        if progress:
            progress("scanning runs")
        found += score_rows(M.duration_rows(store, runs=True), config=config, since_ns=since_ns, is_run=True)
    found.sort(key=lambda a: a.score, reverse=True)
    if save and found:
        now = time.time_ns()
        M.save_anomalies(store, (a.row(now) for a in found), SCORE_ATTR, BASELINE_ATTR)
    return found


def stored(store: SpanStore, *, since_ns: int | None = None, trace_id: str | None = None,
           limit: int = 1000) -> list[Anomaly]:
    """Flags saved by earlier detections (what the viewer shows), worst first."""
    M.ensure_schema(store)
    return [Anomaly(*row[:10]) for row in M.load_anomalies(store, since_ns=since_ns, trace_id=trace_id,
                                                          limit=limit)]
