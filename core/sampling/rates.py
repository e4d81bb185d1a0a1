"""Sampling rates: fixed per pipeline glob, and adaptive ones steered to a spans-per-second target.

Adaptive rates work like Jaeger's adaptive sampling: each interval the observed rate of kept spans is
compared with the target; a rate goes down at once (in proportion) and up slowly (at most ×1.5 per
interval), so a burst of Celery/kombu traffic is cut immediately and recovers without oscillating.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Mapping


class PipelineRates:
    """Rate for a pipeline name from ``{glob: rate}``: an exact name first, then globs in order, then
    ``*``/``default``, then ``default_rate``."""

    def __init__(self, rates: Mapping[str, float] | None = None, default_rate: float = 1.0) -> None:
        rates = dict(rates or {})
        self.default_rate = float(rates.pop("default", rates.pop("*", default_rate)))
        self.rates = {k: float(v) for k, v in rates.items()}
        self._memo: dict[str | None, float] = {}

    def __bool__(self) -> bool:
        return bool(self.rates) or self.default_rate < 1.0

    def rate(self, pipeline: str | None) -> float:
        cached = self._memo.get(pipeline)
        if cached is not None:
            return cached
        value = self.default_rate
        if pipeline is not None:
            if pipeline in self.rates:
                value = self.rates[pipeline]
            else:
                for pattern, rate in self.rates.items():
                    if fnmatch.fnmatchcase(pipeline, pattern):
                        value = rate
                        break
        if len(self._memo) > 4096:
            self._memo.clear()
        self._memo[pipeline] = value
        return value


class AdaptiveRates:
    """Per-pipeline rates adjusted every ``interval_s`` towards ``targets`` (kept spans per second)."""

    MAX_INCREASE = 1.5
    MIN_RATE = 1e-4

    def __init__(self, targets: Mapping[str, float], *, interval_s: float = 10.0,
                 clock: object = time.monotonic) -> None:
        self.targets = PipelineRates({k: v for k, v in targets.items()}, default_rate=-1.0)
        self.interval_s = max(0.01, interval_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._rates: dict[str, float] = {}
        self._kept: dict[str, int] = {}
        self._started = self._now()

    def _now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    def target(self, pipeline: str | None) -> float | None:
        t = self.targets.rate(pipeline)
        return None if t < 0 else t

    def rate(self, pipeline: str | None) -> float | None:
        """The current rate for ``pipeline``, or None when no target covers it."""
        if self.target(pipeline) is None:
            return None
        return self._rates.get(pipeline or "", 1.0)

    def count(self, pipeline: str | None, kept: bool) -> None:
        """Account one decision; rolls the interval over when it has elapsed."""
        key = pipeline or ""
        now = self._now()
        with self._lock:
            if kept:
                self._kept[key] = self._kept.get(key, 0) + 1
            elapsed = now - self._started
            if elapsed >= self.interval_s:
                self._adjust(elapsed)
                self._started = now

    def _adjust(self, elapsed: float) -> None:
        for key in set(self._kept) | set(self._rates):
            target = self.target(key or None)
            if target is None:
                continue
            observed = self._kept.get(key, 0) / elapsed
            rate = self._rates.get(key, 1.0)
            if observed > target:
                rate = max(self.MIN_RATE, rate * target / observed)
            elif observed < target:
                factor = self.MAX_INCREASE if observed == 0 else min(self.MAX_INCREASE, target / observed)
                rate = min(1.0, rate * factor)
            self._rates[key] = rate
        self._kept.clear()

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._rates)
