"""Sampling: run-consistent head sampling, tail sampling at run end, adaptive per-pipeline rates.

``sampler_for(settings)`` gives the head sampler (None: keep the OTel sampler named by the settings);
``tail_exporter(inner, settings)`` wraps the OTLP exporter when ``PIPETRACE_TAIL_SAMPLING`` is on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry.sdk.trace.export import SpanExporter

from . import consistent
from .head import DECISION_ATTR, POLICY_ATTR, RATE_ATTR, RunConsistentSampler
from .rates import AdaptiveRates, PipelineRates
from .tail import RunHistory, TailPolicy, TailSamplingExporter, decision_for, is_run_span

if TYPE_CHECKING:
    from ..config import Settings


def head_rates(settings: Settings) -> PipelineRates:
    """Head rates: the per-pipeline rates, unless the tail applies them (then the head keeps all)."""
    default = 1.0
    if settings.sampler in ("traceidratio", "parentbased_traceidratio") and settings.sampler_arg is not None:
        default = settings.sampler_arg
    if settings.tail_sampling:
        return PipelineRates({}, default_rate=1.0)
    return PipelineRates(settings.sample_rates, default_rate=default)


def sampler_for(settings: Settings) -> RunConsistentSampler | None:
    """The run-consistent sampler when rates, targets or a ratio sampler are configured.

    OTel's ParentBased(TraceIdRatioBased) would keep every task span (their derived parent context is
    remote and sampled) while dropping run spans; a ratio here means whole runs instead."""
    ratio = settings.sampler in ("traceidratio", "parentbased_traceidratio")
    if not (settings.sample_rates or settings.sample_targets or ratio):
        return None
    adaptive = None
    if settings.sample_targets:
        adaptive = AdaptiveRates(settings.sample_targets, interval_s=settings.sample_adapt_interval_s)
    return RunConsistentSampler(head_rates(settings), adaptive)


def tail_exporter(inner: SpanExporter, settings: Settings) -> SpanExporter:
    """``inner`` behind tail sampling when it is on; ``inner`` itself otherwise."""
    if not settings.tail_sampling:
        return inner
    rates = PipelineRates(settings.sample_rates)
    policy = TailPolicy(rates, slow_ms=settings.tail_slow_ms, history=RunHistory(settings.store_path))
    return TailSamplingExporter(inner, held_path=settings.home / "tail.db", policy=policy,
                                store_path=settings.store_path if "store" in settings.exporters else None,
                                local_retention_h=settings.tail_local_retention_h,
                                max_hold_h=settings.tail_max_hold_h)


__all__ = [
    "DECISION_ATTR", "POLICY_ATTR", "RATE_ATTR", "AdaptiveRates", "PipelineRates", "RunConsistentSampler",
    "RunHistory", "TailPolicy", "TailSamplingExporter", "consistent", "decision_for", "head_rates",
    "is_run_span", "sampler_for", "tail_exporter",
]
