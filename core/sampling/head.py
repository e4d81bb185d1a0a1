"""Head sampling that keeps or drops whole runs: the decision is a function of the run's trace id.

Every process of a run (scheduler, workers, consumers) computes the same trace id from the run id and
so the same decision, with no coordination. Local children follow their parent; an incoming upstream
context (a caller that started the run) is followed when its trace id is not the run's derived one.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState, get_current_span
from opentelemetry.util.types import Attributes

from .. import attributes as A
from ..identity import derive_trace_id
from . import consistent
from .rates import AdaptiveRates, PipelineRates

RATE_ATTR = "pipetrace.sampling.rate"
POLICY_ATTR = "pipetrace.sampling.policy"
DECISION_ATTR = "pipetrace.sampling.decision"

_MEMO_MAX = 4096


class RunConsistentSampler(Sampler):
    """Per-pipeline rates (globs) and optional adaptive targets; writes ``th`` into tracestate."""

    def __init__(self, rates: PipelineRates | None = None, adaptive: AdaptiveRates | None = None) -> None:
        self.rates = rates or PipelineRates()
        self.adaptive = adaptive
        # trace id → (pipeline, upstream?) learnt from spans that carry the run's attributes, so later
        # spans of the run without them (after-the-fact batches) get the same rate in this process.
        self._memo: dict[int, tuple[str | None, bool]] = {}

    def rate_for(self, pipeline: str | None) -> float:
        if self.adaptive is not None:
            adaptive = self.adaptive.rate(pipeline)
            if adaptive is not None:
                return min(adaptive, self.rates.rate(pipeline))
        return self.rates.rate(pipeline)

    def _run_of(self, trace_id: int, attributes: Attributes) -> tuple[str | None, bool]:
        attrs = attributes or {}
        pipeline = attrs.get(A.PIPELINE_NAME)
        if pipeline is None:
            return self._memo.get(trace_id, (None, False))
        system, run_id = attrs.get(A.SYSTEM), attrs.get(A.PIPELINE_RUN_ID)
        upstream = False
        if system is not None and run_id is not None:
            upstream = trace_id != derive_trace_id(str(system), str(pipeline), str(run_id))
        entry = (str(pipeline), upstream)
        if len(self._memo) >= _MEMO_MAX:
            self._memo.clear()
        self._memo[trace_id] = entry
        return entry

    def should_sample(
        self, parent_context: Context | None, trace_id: int, name: str, kind: SpanKind | None = None,
        attributes: Attributes = None, links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = get_current_span(parent_context).get_span_context()
        if parent.is_valid and not parent.is_remote:
            if not parent.trace_flags.sampled:
                return SamplingResult(Decision.DROP, None, parent.trace_state)
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, parent.trace_state)
        state = parent.trace_state if parent.is_valid else trace_state
        if parent.is_valid and not parent.trace_flags.sampled:
            return SamplingResult(Decision.DROP, None, state)
        pipeline, upstream = self._run_of(trace_id, attributes)
        if parent.is_valid and upstream:
            # the run was started by a traced caller that sampled it: follow the caller
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, state)
        rate = self.rate_for(pipeline)
        keep = consistent.keeps(trace_id, rate, state)
        if self.adaptive is not None:
            self.adaptive.count(pipeline, keep)
        if not keep:
            return SamplingResult(Decision.DROP, None, state)
        # the SDK gives the span the sampler's attributes, so the span's own must be passed through
        attrs = {**attributes, RATE_ATTR: rate} if attributes and rate < 1.0 else (
            {RATE_ATTR: rate} if rate < 1.0 else attributes)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attrs, consistent.with_threshold(state, rate))

    def get_description(self) -> str:
        return f"RunConsistentSampler(default={self.rates.default_rate}, rates={self.rates.rates})"
