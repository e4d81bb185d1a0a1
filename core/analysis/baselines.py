"""Robust duration baselines: median and MAD of log-durations over the last N runs, seasonal when it pays.

Why log: pipeline durations are right-skewed and multiplicative (a task twice as slow is the signal, not
"200 ms slower"), so in log space the spread is roughly symmetric and a single MAD fits short and long
tasks alike. Why median/MAD: a few past anomalies in the window do not move the band (breakdown 50 %).

Score = (log(x) − median) / (1.4826 · MAD), i.e. a robust z-score; 1.4826·MAD estimates σ for normal data.
MAD is floored at ``min_rel_spread`` (5 % by default) so a task with near-constant durations does not
flag a 1 % wobble. Seasonality: if the same hour-of-day (then day-of-week) has at least ``min_seasonal``
earlier samples and its median differs from the overall one by more than ``seasonal_shift`` robust σ,
that bucket is the baseline; otherwise the recent window is (the smaller bucket would only add noise).
Before a bucket is that full, it still vetoes: a duration that is normal for its hour of day (scored
against the median of the few earlier samples at that hour, with the recent σ) is not flagged, so a
nightly slowdown is not an alarm on the second night.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..util.numbers import percentile

MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class BaselineConfig:
    """Defaults measured on synthetic histories (tests/analysis/test_anomalies.py; docs/analysis.md)."""

    window: int = 50              # recent samples forming the band
    min_history: int = 20         # no verdict before this many earlier samples
    threshold: float = 4.0        # robust z above which a duration is anomalous
    min_ratio: float = 1.5        # ... and at least this many times the baseline median
    min_excess_ms: float = 100.0  # ... and at least this much slower in absolute terms
    min_rel_spread: float = 0.05  # floor of the robust σ in log space (≈5 %)
    seasonal: bool = True
    min_seasonal: int = 8         # earlier samples needed in an hour-of-day / weekday bucket
    seasonal_window: int = 30     # most recent samples kept per bucket
    seasonal_shift: float = 2.0   # bucket median must differ by this many σ to be used


@dataclass(frozen=True)
class Baseline:
    median_ms: float
    p95_ms: float
    sigma: float  # robust σ of log-durations
    count: int
    basis: str    # "recent", "hour:07", "weekday:Mon"

    def score(self, duration_ms: float) -> float:
        if duration_ms <= 0 or self.median_ms <= 0:
            return 0.0
        return (math.log(duration_ms) - math.log(self.median_ms)) / self.sigma


def _median(sorted_values: Sequence[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2


def robust(log_values: Iterable[float], floor: float) -> tuple[float, float]:
    """(median, robust σ) of log values, σ floored."""
    vals = sorted(log_values)
    med = _median(vals)
    mad = _median(sorted(abs(v - med) for v in vals))
    return med, max(MAD_TO_SIGMA * mad, floor)


def _make(logs: Sequence[float], basis: str, floor: float) -> Baseline:
    med, sigma = robust(logs, floor)
    durs = sorted(math.exp(v) for v in logs)
    return Baseline(math.exp(med), percentile(durs, 0.95), sigma, len(logs), basis)


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class History:
    """Earlier durations of one (pipeline, task), fed in time order; answers "what is normal now"."""

    def __init__(self, config: BaselineConfig) -> None:
        self.config = config
        self.recent: deque[float] = deque(maxlen=config.window)
        self.hours: dict[int, deque[float]] = {}
        self.weekdays: dict[int, deque[float]] = {}
        self.count = 0
        self._overall: dict[str, tuple[int, float, float]] = {}  # label -> (count when computed, med, σ)

    def add(self, start_ns: int, duration_ms: float) -> None:
        if duration_ms <= 0:
            return
        value = math.log(duration_ms)
        self.recent.append(value)
        self.count += 1
        if self.config.seasonal:
            tm = time.localtime(start_ns / 1e9)
            size = self.config.seasonal_window
            self.hours.setdefault(tm.tm_hour, deque(maxlen=size)).append(value)
            self.weekdays.setdefault(tm.tm_wday, deque(maxlen=size)).append(value)

    def _overall_of(self, label: str, buckets: dict[int, deque[float]]) -> tuple[float, float]:
        """Median and σ of all bucketed samples, recomputed every 25 new samples (it moves slowly)."""
        cached = self._overall.get(label)
        if cached is None or self.count - cached[0] >= 25:
            med, sigma = robust([v for b in buckets.values() for v in b], self.config.min_rel_spread)
            cached = (self.count, med, sigma)
            self._overall[label] = cached
        return cached[1], cached[2]

    def baseline(self, start_ns: int) -> Baseline | None:
        cfg = self.config
        if len(self.recent) < cfg.min_history:
            return None
        floor = cfg.min_rel_spread
        base = _make(list(self.recent), "recent", floor)
        if not cfg.seasonal:
            return base
        tm = time.localtime(start_ns / 1e9)
        # Compare each bucket with the whole bucketed history (not the recent window, which mixes hours).
        for label, buckets, key in (("hour", self.hours, tm.tm_hour), ("weekday", self.weekdays, tm.tm_wday)):
            bucket = buckets.get(key)
            if bucket is None or len(bucket) < cfg.min_seasonal:
                continue
            all_med, all_sigma = self._overall_of(label, buckets)
            b_med, _ = robust(bucket, floor)
            if abs(b_med - all_med) > cfg.seasonal_shift * all_sigma:
                name = f"hour:{key:02d}" if label == "hour" else f"weekday:{_WEEKDAYS[key]}"
                return _make(list(bucket), name, floor)
        return base


def judge(history: History, start_ns: int, duration_ms: float) -> tuple[bool, float, Baseline] | None:
    """(flagged, score, baseline) of one duration against the history before it; None without one."""
    base = history.baseline(start_ns)
    if base is None:
        return None
    flagged, score = is_anomalous(duration_ms, base, history.config)
    if flagged and base.basis == "recent" and history.config.seasonal and duration_ms > 0:
        bucket = history.hours.get(time.localtime(start_ns / 1e9).tm_hour)
        if bucket:
            med, _ = robust(bucket, history.config.min_rel_spread)
            if (math.log(duration_ms) - med) / base.sigma < history.config.threshold:
                flagged = False
    return flagged, score, base


def is_anomalous(duration_ms: float, baseline: Baseline, config: BaselineConfig) -> tuple[bool, float]:
    """(flagged, score): slow beyond the threshold, the ratio and the absolute excess all at once."""
    score = baseline.score(duration_ms)
    flagged = (score >= config.threshold and duration_ms >= baseline.median_ms * config.min_ratio
               and duration_ms - baseline.median_ms >= config.min_excess_ms)
    return flagged, score
