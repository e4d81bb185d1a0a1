"""Synthetic run histories with known ground truth: for measuring the detectors (tests, benchmark, docs).

Each run is one trace: a run span and a chain of task spans with log-normal durations around a per-task
median; some pipelines are seasonal (slower at night). A fraction of task spans is made slow on purpose
and returned as the truth the anomaly detector should find.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from .. import attributes as A
from ..identity import (
    derive_batch_span_id,
    derive_run_span_id,
    derive_task_span_id,
    derive_trace_id,
    format_span_id,
    format_trace_id,
)
from ..store.records import SpanRecord

HOUR_NS = 3600 * 10**9


@dataclass
class HistorySpec:
    pipelines: int = 3
    runs_per_pipeline: int = 400
    tasks: int = 5
    batches_per_task: int = 0          # extra batch spans under each task (benchmark volume)
    start_ns: int = 1_700_000_000 * 10**9
    interval_ns: int = HOUR_NS         # one run per pipeline per interval
    sigma: tuple[float, float] = (0.05, 0.2)      # log-normal spread per task, drawn once
    median_ms: tuple[float, float] = (2_000, 120_000)
    slow_rate: float = 0.02            # fraction of task spans made slow
    slow_factor: tuple[float, float] = (3.0, 8.0)
    seasonal_pipelines: int = 1        # the first N pipelines run 2x slower from 00:00 to 05:59
    failure_rate: float = 0.01
    warmup_runs: int = 25              # no injected slowness before the baseline can exist
    seed: int = 7
    system: str = "python"


@dataclass
class Run:
    trace_id: str
    spans: list[SpanRecord] = field(default_factory=list)


def generate(spec: HistorySpec) -> Iterator[tuple[Run, set[str]]]:
    """Yield (run, span ids made slow) in time order per pipeline, pipeline after pipeline."""
    rng = random.Random(spec.seed)
    for p in range(spec.pipelines):
        pipeline = f"pipeline_{p}"
        medians = [math.exp(rng.uniform(math.log(spec.median_ms[0]), math.log(spec.median_ms[1])))
                   for _ in range(spec.tasks)]
        sigmas = [rng.uniform(*spec.sigma) for _ in range(spec.tasks)]
        for r in range(spec.runs_per_pipeline):
            yield _run(spec, rng, pipeline, p, r, medians, sigmas)


def _run(spec: HistorySpec, rng: random.Random, pipeline: str, p: int, r: int, medians: list[float],
         sigmas: list[float]) -> tuple[Run, set[str]]:
    run_id = f"run-{r:06d}"
    system = spec.system
    trace_id = format_trace_id(derive_trace_id(system, pipeline, run_id))
    run_span_id = format_span_id(derive_run_span_id(system, pipeline, run_id))
    start = spec.start_ns + r * spec.interval_ns + p * 60 * 10**9
    hour = (start // HOUR_NS) % 24
    seasonal = 2.0 if p < spec.seasonal_pipelines and hour < 6 else 1.0
    run = Run(trace_id)
    slow: set[str] = set()
    cursor = start
    failed = False
    for t, (median, sigma) in enumerate(zip(medians, sigmas, strict=True)):
        task = f"task_{t}"
        span_id = format_span_id(derive_task_span_id(system, pipeline, run_id, task, None, 1))
        dur_ms = median * seasonal * math.exp(rng.gauss(0, sigma))
        if r >= spec.warmup_runs and rng.random() < spec.slow_rate:
            dur_ms *= rng.uniform(*spec.slow_factor)
            slow.add(span_id)
        queued_ms = rng.uniform(5, 200)
        begin = cursor + int(queued_ms * 1e6)
        end = begin + int(dur_ms * 1e6)
        err = rng.random() < spec.failure_rate
        failed = failed or err
        attrs = {A.SYSTEM: system, A.PIPELINE_NAME: pipeline, A.PIPELINE_RUN_ID: run_id, A.TASK_NAME: task,
                 A.TASK_RUN_ID: f"{run_id}/{task}#1", A.TRY_NUMBER: 1, A.QUEUED_MS: round(queued_ms, 3),
                 A.TASK_RESULT: A.RESULT_FAILURE if err else A.RESULT_SUCCESS}
        run.spans.append(SpanRecord(trace_id, span_id, run_span_id, A.task_span_name(task), "INTERNAL",
                                    begin, end, "ERROR" if err else "OK", attributes=attrs,
                                    resource={"service.name": "synthetic"}, scope="pipetrace"))
        for b in range(spec.batches_per_task):
            b_id = format_span_id(derive_batch_span_id(system, pipeline, run_id, task, b))
            width = (end - begin) // max(1, spec.batches_per_task)
            run.spans.append(SpanRecord(
                trace_id, b_id, span_id, A.batch_span_name(task), "INTERNAL", begin + b * width,
                begin + (b + 1) * width, "OK",
                attributes={A.SYSTEM: system, A.PIPELINE_NAME: pipeline, A.PIPELINE_RUN_ID: run_id,
                            A.BATCH_INDEX: b, A.BATCH_SIZE: 1000},
                resource={"service.name": "synthetic"}, scope="pipetrace"))
        cursor = end
    result = A.RESULT_FAILURE if failed else A.RESULT_SUCCESS
    run.spans.insert(0, SpanRecord(
        trace_id, run_span_id, None, A.run_span_name(pipeline), "SERVER", start, cursor + 10**6,
        "ERROR" if failed else "OK",
        attributes={A.SYSTEM: system, A.PIPELINE_NAME: pipeline, A.PIPELINE_RUN_ID: run_id,
                    A.PIPELINE_RESULT: result},
        resource={"service.name": "synthetic"}, scope="pipetrace"))
    return run, slow
