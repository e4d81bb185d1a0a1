"""Head sampling: whole runs kept or dropped by trace id, identically in separate processes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pipetrace
import pytest
from pipetrace import attributes as A
from pipetrace.identity import RunIdentity
from pipetrace.sampling import AdaptiveRates, RunConsistentSampler, consistent
from pipetrace.sampling.rates import PipelineRates

RUNS = 10_000
EMIT = textwrap.dedent("""
    import sys, time
    import pipetrace
    role, n = sys.argv[1], int(sys.argv[2])
    pipetrace.configure(export_interval_s=0.2, max_queue_size=200_000)
    now = time.time()
    for pipeline, count in (("etl_orders", n), ("billing", 300)):
        for i in range(count):
            if role == "run":
                pipetrace.run_span("python", pipeline, f"r{i}", start=now - 2, end=now, result="success")
            else:
                with pipetrace.task_span("python", pipeline, f"r{i}", "extract"):
                    pass
    assert pipetrace.force_flush(120)
    print(pipetrace.stats())
""")


def _spawn(home: Path, role: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PIPETRACE_HOME": str(home), "PIPETRACE_EXPORTERS": "store",
           "PIPETRACE_SAMPLE_RATES": "etl_*=0.1,billing=1"}
    return subprocess.Popen([sys.executable, "-c", EMIT, role, str(RUNS)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.sqlite_only
def test_rate_0_1_over_10000_runs_and_two_processes_agree(tmp_path: Path) -> None:
    home = tmp_path / "home"
    procs = [_spawn(home, "run"), _spawn(home, "task")]  # scheduler-like and worker-like, concurrently
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "'dropped': 0" in out
    conn = sqlite3.connect(home / "traces.db")
    rows = conn.execute("SELECT trace_id, name, pipeline, attributes FROM spans").fetchall()
    conn.close()
    run_traces = {(t, p) for t, n, p, _ in rows if n.startswith("run ")}
    task_traces = {(t, p) for t, n, p, _ in rows if n.startswith("task ")}
    # the same decision in both processes, for every run
    assert run_traces == task_traces
    kept = {t for t, p in run_traces if p == "etl_orders"}
    fraction = len(kept) / RUNS
    print(f"kept fraction at rate 0.1 over {RUNS} runs: {fraction:.4f}")
    assert abs(fraction - 0.1) <= 0.015
    # and the same as the decision computed from the run id here, a third process
    expected = {f"{RunIdentity('python', 'etl_orders', f'r{i}').trace_id:032x}" for i in range(RUNS)
                if consistent.keeps(RunIdentity("python", "etl_orders", f"r{i}").trace_id, 0.1)}
    assert kept == expected
    assert sum(1 for _, p in run_traces if p == "billing") == 300  # rate 1 for billing
    # the rate is recorded on kept spans so counts can be extrapolated
    assert all('"pipetrace.sampling.rate":0.1' in a for _, n, p, a in rows if p == "etl_orders")


def test_th_written_in_tracestate_for_a_collector_downstream(traced) -> None:
    pipetrace.configure(home=traced.home, exporters="store", sample_rates="etl_*=0.1", export_interval_s=0.05)
    kept = next(f"r{i}" for i in range(1000)
                if consistent.keeps(RunIdentity("python", "etl_x", f"r{i}").trace_id, 0.1))
    with pipetrace.task_span("python", "etl_x", kept, "extract"):
        carrier = pipetrace.inject()
        with pipetrace.get_tracer().start_as_current_span("child"):
            child_carrier = pipetrace.inject()
    th = consistent.th_value(consistent.threshold(0.1))
    assert th == "e6666666666666"
    assert carrier["tracestate"] == f"ot=th:{th}" == child_carrier["tracestate"]
    assert carrier["traceparent"].endswith("-01")
    assert consistent.rate_from_trace_state(
        pipetrace.carriers.span_context_of(carrier).trace_state) == pytest.approx(0.1)


def test_dropped_run_is_dropped_everywhere_including_children(traced) -> None:
    pipetrace.configure(home=traced.home, exporters="store", sample_rates="etl_*=0.1", export_interval_s=0.05)
    dropped = next(f"r{i}" for i in range(1000)
                   if not consistent.keeps(RunIdentity("python", "etl_y", f"r{i}").trace_id, 0.1))
    with pipetrace.task_span("python", "etl_y", dropped, "extract") as span:
        assert not span.get_span_context().trace_flags.sampled
        with pipetrace.batch_span("extract", index=0):
            pass
        carrier = pipetrace.inject()
    pipetrace.run_span("python", "etl_y", dropped, start=time.time() - 1, end=time.time(), result="success")
    assert carrier["traceparent"].endswith("-00")  # downstream consumers learn it is not sampled
    assert traced.spans() == []


def test_upstream_context_is_followed(traced) -> None:
    """A run started by a traced caller: the caller's sampled flag decides, not our rate."""
    pipetrace.configure(home=traced.home, exporters="store", sample_rates="*=0", export_interval_s=0.05)
    sampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    unsampled = "00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    with pipetrace.task_span("python", "ingest", "u1", "extract", upstream=sampled):
        pass
    with pipetrace.task_span("python", "ingest", "u2", "extract", upstream=unsampled):
        pass
    with pipetrace.task_span("python", "ingest", "u3", "extract"):  # no caller: rate 0 drops it
        pass
    spans = traced.spans()
    assert [(s.trace_id, s.name) for s in spans] == [("0af7651916cd43dd8448eb211c80319c", "task extract")]


def test_per_pipeline_globs() -> None:
    rates = PipelineRates({"etl_*": 0.1, "billing": 1.0, "*": 0.5})
    assert rates.rate("etl_orders") == 0.1 and rates.rate("billing") == 1.0
    assert rates.rate("other") == 0.5 and rates.rate(None) == 0.5
    assert PipelineRates().rate("anything") == 1.0


def test_adaptive_rate_goes_down_at_once_and_up_slowly() -> None:
    now = [0.0]
    adaptive = AdaptiveRates({"celery_*": 10.0}, interval_s=1.0, clock=lambda: now[0])
    sampler = RunConsistentSampler(PipelineRates(), adaptive)
    attrs = {A.PIPELINE_NAME: "celery_tasks", A.SYSTEM: "celery"}

    def traffic(n: int) -> int:
        kept = 0
        for i in range(n):
            ident = RunIdentity("celery", "celery_tasks", f"m{now[0]}-{i}")
            result = sampler.should_sample(None, ident.trace_id, "task t", attributes={
                **attrs, A.PIPELINE_RUN_ID: ident.run_id})
            kept += result.decision.is_sampled()
        now[0] += 1.0
        return kept

    assert sampler.rate_for("celery_tasks") == 1.0
    assert traffic(1000) == 1000  # first interval at rate 1: 1000 spans/s against a target of 10
    traffic(1)  # rolls the interval: the rate falls at once to about 10/1000
    assert sampler.rate_for("celery_tasks") == pytest.approx(0.01, rel=0.01)
    kept = traffic(1000)
    assert 0 < kept < 40
    rates = []
    for _ in range(6):  # quiet traffic (below target): the rate climbs back, at most ×1.5 an interval
        traffic(3)
        rates.append(sampler.rate_for("celery_tasks"))
    assert all(b <= a * 1.5 + 1e-9 and b >= a for a, b in zip(rates, rates[1:], strict=False))
    assert rates[-1] > rates[0]
    assert sampler.rate_for("other_pipeline") == 1.0  # no target: untouched
