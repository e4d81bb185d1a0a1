"""Tail sampling at run end: hold a run's spans on disk, decide when the run span arrives, export whole.

Sits in front of the OTLP exporter only (the local store keeps every span; spans of runs sampled out
are pruned from it after ``tail_local_retention_h``). A run is kept whole when it failed, had a retry,
or was slower than its pipeline's p95 (store history) or ``tail_slow_ms``; otherwise at the pipeline's
rate, with the same consistent decision as head sampling. The decision and policy are recorded on the
exported run span (``pipetrace.sampling.policy``) and in ``tail.db``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from .. import attributes as A
from ..store import maintenance, queries, target
from ..store.sqlite import SpanStore
from ..util.ratelimit import warn_once_per
from . import consistent
from .codec import Decoder, encode
from .head import DECISION_ATTR, POLICY_ATTR, RATE_ATTR
from .held import Decision, HeldSpan, HeldStore
from .rates import PipelineRates

log = logging.getLogger("pipetrace.sampling")

POLICIES = ("failure", "retry", "slow_threshold", "slow_p95", "rate", "expired")
CHUNK = 512


def is_run_span(span: ReadableSpan) -> bool:
    return A.is_run_span(span.name, span.kind, span.attributes or {})


def _failed(span: ReadableSpan) -> bool:
    attrs = span.attributes or {}
    if span.status is not None and span.status.status_code == StatusCode.ERROR:
        return True
    return attrs.get(A.PIPELINE_RESULT) in A.FAILED_RESULTS or attrs.get(A.TASK_RESULT) in A.FAILED_RESULTS


def _retried(span: ReadableSpan) -> bool:
    attrs = span.attributes or {}
    try:
        if int(attrs.get(A.TRY_NUMBER, 1) or 1) > 1:  # type: ignore[arg-type]
            return True
    except (TypeError, ValueError):
        pass
    return attrs.get(A.TASK_RESULT) == A.RESULT_RETRY or attrs.get(A.PIPELINE_RESULT) == A.RESULT_RETRY


class RunHistory:
    """p95 of a pipeline's run durations over the runs that started before the one being decided.

    Only earlier runs count: when the exporter lags, later runs may already be in the store, and a run
    must not be judged against its future. One indexed query per run end."""

    def __init__(self, store_path: Path, *, min_runs: int = 20, last: int = 200) -> None:
        self.store_path = store_path
        self.min_runs = min_runs
        self.last = last
        self._opened: SpanStore | None = None

    def _store(self) -> SpanStore:
        if self._opened is None:
            self._opened = SpanStore(self.store_path)
        return self._opened

    def p95_ms(self, pipeline: str, before_ns: int | None = None, exclude_trace: str | None = None) -> float | None:
        if not self.store_path.exists() and target.for_path(self.store_path) is None:
            return None
        try:
            rows = queries.run_durations(self._store(), pipeline, before_ns, exclude_trace, self.last)
        except Exception as exc:
            warn_once_per(log, "tail-history", "pipetrace: cannot read run history for tail sampling: %r", exc)
            return None
        durations = sorted(r / 1e6 for r in rows)
        if len(durations) < self.min_runs:
            return None
        pos = (len(durations) - 1) * 0.95
        lo = int(pos)
        hi = min(lo + 1, len(durations) - 1)
        return durations[lo] + (durations[hi] - durations[lo]) * (pos - lo)


class TailPolicy:
    def __init__(self, rates: PipelineRates, *, slow_ms: float | None, history: RunHistory | None) -> None:
        self.rates = rates
        self.slow_ms = slow_ms
        self.history = history

    def decide(self, trace_id: int, trigger: ReadableSpan | None, pipeline: str | None, *,
               any_error: bool, any_retry: bool, expired: bool = False) -> tuple[bool, str, float]:
        """(keep, policy, rate) for a trace whose run ended (or whose hold expired)."""
        rate = self.rates.rate(pipeline)
        if any_error or (trigger is not None and _failed(trigger)):
            return True, "failure", rate
        if any_retry or (trigger is not None and _retried(trigger)):
            return True, "retry", rate
        if trigger is not None and trigger.start_time and trigger.end_time:
            duration_ms = (trigger.end_time - trigger.start_time) / 1e6
            if self.slow_ms is not None and duration_ms > self.slow_ms:
                return True, "slow_threshold", rate
            p95 = None
            if self.history is not None and pipeline:
                p95 = self.history.p95_ms(pipeline, trigger.start_time, f"{trace_id:032x}")
            if p95 is not None and duration_ms > p95:
                return True, "slow_p95", rate
        return consistent.keeps(trace_id, rate), "expired" if expired else "rate", rate


class TailSamplingExporter(SpanExporter):
    """Wraps the OTLP exporter: hold → decide at run end → export kept runs in chunks."""

    def __init__(self, inner: SpanExporter, *, held_path: Path, policy: TailPolicy,
                 store_path: Path | None = None, local_retention_h: float = 24.0,
                 max_hold_h: float = 48.0, gc_interval_s: float = 60.0) -> None:
        self.inner = inner
        self.held = HeldStore(held_path)
        self.policy = policy
        self.store_path = store_path
        self.local_retention_ns = int(local_retention_h * 3600e9)
        self.max_hold_ns = int(max_hold_h * 3600e9)
        self.gc_interval_s = gc_interval_s
        self._last_gc = 0.0
        self._lock = threading.Lock()
        self.decided = {"keep": 0, "drop": 0}

    # ---- SpanExporter --------------------------------------------------------------------------------
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            ok = True
            try:
                ok = self._export(spans)
            except Exception as exc:
                warn_once_per(log, "tail-export", "pipetrace: tail sampling failed: %r", exc)
                ok = False
            try:
                if time.monotonic() - self._last_gc >= self.gc_interval_s:
                    self._last_gc = time.monotonic()
                    ok = self.collect_garbage() and ok
            except Exception as exc:
                warn_once_per(log, "tail-gc", "pipetrace: tail sampling housekeeping failed: %r", exc)
            return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        try:
            self.inner.shutdown()
        finally:
            self.held.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)

    # ---- the work ------------------------------------------------------------------------------------
    def _export(self, spans: Sequence[ReadableSpan]) -> bool:
        rows = []
        for span in spans:
            ctx = span.context
            if ctx is None:
                continue
            attrs = span.attributes or {}
            pipeline = attrs.get(A.PIPELINE_NAME)
            rows.append(HeldSpan(f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", _failed(span), _retried(span),
                                 str(pipeline) if pipeline is not None else None, encode(span)))
        decided = self.held.hold(rows)
        ok = True
        late = [s for s in spans if s.context is not None and f"{s.context.trace_id:032x}" in decided]
        kept_late = []
        for span in late:
            d = decided[f"{span.context.trace_id:032x}"]  # type: ignore[union-attr]
            if d.keep and f"{span.context.span_id:016x}" != d.run_span_id:  # type: ignore[union-attr]
                kept_late.append(span)  # a kept run's straggler; a repeated run span is not re-sent
        if kept_late:
            ok = self._send(kept_late) and ok
        for span in spans:
            if span.context is None or f"{span.context.trace_id:032x}" in decided:
                continue
            if is_run_span(span) or span.parent is None:
                ok = self._decide(span) and ok
        return ok

    def _decide(self, trigger: ReadableSpan | None, trace_hex: str | None = None,
                pipeline: str | None = None, expired: bool = False) -> bool:
        if trigger is not None:
            assert trigger.context is not None
            trace_hex = f"{trigger.context.trace_id:032x}"
            value = (trigger.attributes or {}).get(A.PIPELINE_NAME)
            pipeline = str(value) if value is not None else None
        assert trace_hex is not None
        any_error, any_retry, _ = self.held.flags(trace_hex)
        keep, policy, rate = self.policy.decide(int(trace_hex, 16), trigger, pipeline, any_error=any_error,
                                                any_retry=any_retry, expired=expired)
        now = time.time_ns()
        run_span_hex = f"{trigger.context.span_id:016x}" if trigger is not None and trigger.context else None
        decision = Decision(trace_hex, keep, policy, rate, run_span_hex, now)
        if not self.held.decide(decision, expires_ns=None if keep else now + self.local_retention_ns):
            return True  # another process decided first; it exports the held spans
        self.decided["keep" if keep else "drop"] += 1
        return self._release(decision)

    def _release(self, decision: Decision) -> bool:
        """Export (kept) or discard (dropped) the decided trace's held spans, chunk by chunk; skipped
        while another process (another host, on the fleet store) is releasing the same trace."""
        with self.held.claim(decision.trace_id) as mine:
            return self._release_claimed(decision) if mine else True

    def _release_claimed(self, decision: Decision) -> bool:
        decoder = Decoder()
        ok = True
        extra = {POLICY_ATTR: decision.policy, DECISION_ATTR: "keep" if decision.keep else "drop"}
        if decision.rate is not None:
            extra[RATE_ATTR] = decision.rate  # type: ignore[assignment]
        for chunk in self.held.drain(decision.trace_id, CHUNK):
            if not decision.keep:
                continue
            batch = [decoder.decode(h.data, extra if h.span_id == decision.run_span_id else None)
                     for h in chunk]
            ok = self._send(batch) and ok
        return ok

    def _send(self, batch: Sequence[ReadableSpan]) -> bool:
        try:
            return self.inner.export(batch) == SpanExportResult.SUCCESS
        except Exception as exc:
            warn_once_per(log, "tail-send", "pipetrace: exporter raised %r", exc)
            return False

    # ---- housekeeping --------------------------------------------------------------------------------
    def collect_garbage(self) -> bool:
        """Decide runs whose end never came, finish exports a dead process left, prune sampled-out
        runs from the local store after the retention window."""
        now = time.time_ns()
        ok = True
        for trace_hex, pipeline in self.held.stale_traces(now - self.max_hold_ns):
            ok = self._decide(None, trace_hex, pipeline, expired=True) and ok
        for decision in self.held.orphaned(now - 300 * 10**9):
            ok = self._release(decision) and ok
        expired = self.held.expired_drops(now)
        if expired:
            self._prune_store(expired)
            self.held.mark_pruned(expired)
        self.held.forget_decisions(now - 2 * max(self.local_retention_ns, self.max_hold_ns))
        return ok

    def _prune_store(self, trace_ids: Sequence[str]) -> None:
        """Remove sampled-out runs from the store: spans and anomaly flags alike (the store's own delete)."""
        if self.store_path is None:
            return
        if not self.store_path.exists() and target.for_path(self.store_path) is None:
            return
        store = SpanStore(self.store_path)
        try:
            maintenance.delete_traces(store, list(trace_ids))
        finally:
            store.close()


def decision_for(home: Path, trace_id: str) -> dict[str, Any] | None:
    """The recorded tail decision of a trace (for the CLI/viewer), or None."""
    path = Path(home) / "tail.db"
    if not path.exists() and target.for_path(path) is None:
        return None
    store = HeldStore(path)
    try:
        d = store.decision(trace_id)
    finally:
        store.close()
    if d is None:
        return None
    return {"decision": "keep" if d.keep else "drop", "policy": d.policy, "rate": d.rate,
            "decided_ns": d.decided_ns}
