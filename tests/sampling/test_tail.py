"""Tail sampling at run end: failed, retried and slow runs kept whole at rate 0; held spans survive a
process restart and are exported once; sampled-out runs stay in the local store for the retention."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pipetrace
import pytest
from otlp_receiver import OTLPReceiver, attrs
from pipetrace import attributes as A
from pipetrace.identity import RunIdentity
from pipetrace.sampling import TailPolicy, TailSamplingExporter, decision_for
from pipetrace.sampling.held import HeldStore
from pipetrace.sampling.rates import PipelineRates


def _configure(home: Path, endpoint: str, **kw: object) -> None:
    pipetrace.configure(home=home, exporters="store,otlp", otlp_endpoint=endpoint, tail_sampling=True,
                        sample_rates="*=0", export_interval_s=0.05, **kw)


def _trace(pipeline: str, run_id: str) -> str:
    return f"{RunIdentity('python', pipeline, run_id).trace_id:032x}"


def _run(run_id: str, *, seconds: float = 1.0, fail: bool = False, retry: bool = False,
         pipeline: str = "nightly", ago: float = 0.0) -> None:
    if retry:
        first = pipetrace.start_task_span("python", pipeline, run_id, "extract", try_number=1)
        pipetrace.end_task_span(first, result=A.RESULT_RETRY)
    try:
        with pipetrace.task_span("python", pipeline, run_id, "extract", try_number=2 if retry else 1):
            if fail:
                raise RuntimeError("source table missing")
    except RuntimeError:
        pass
    now = time.time() - ago
    pipetrace.run_span("python", pipeline, run_id, start=now - seconds, end=now,
                       result=A.RESULT_FAILURE if fail else A.RESULT_SUCCESS)


def _received(receiver: OTLPReceiver) -> dict[str, list]:
    out: dict[str, list] = {}
    for _, span in receiver.spans():
        out.setdefault(span.trace_id.hex(), []).append(span)
    return out


def test_failed_retried_and_slow_runs_are_kept_whole_at_rate_0(traced) -> None:
    with OTLPReceiver() as receiver:
        _configure(traced.home, receiver.endpoint, tail_slow_ms=5000)
        _run("ok")
        _run("failed", fail=True)
        _run("retried", retry=True)
        _run("slow", seconds=6)
        assert pipetrace.force_flush(20)
        got = _received(receiver)
    expected = {_trace("nightly", r): r for r in ("failed", "retried", "slow")}
    assert set(got) == set(expected)
    policies = {}
    for trace_id, spans in got.items():
        names = sorted(s.name for s in spans)
        assert names == (["run nightly", "task extract", "task extract"] if expected[trace_id] == "retried"
                         else ["run nightly", "task extract"])  # whole runs
        run = next(s for s in spans if s.name == "run nightly")
        a = attrs(run.attributes)
        policies[expected[trace_id]] = a["pipetrace.sampling.policy"]
        assert a["pipetrace.sampling.decision"] == "keep" and a["pipetrace.sampling.rate"] == 0.0
    assert policies == {"failed": "failure", "retried": "retry", "slow": "slow_threshold"}
    # the local store keeps everything, the sampled-out run included
    assert len(traced.spans(_trace("nightly", "ok"))) == 2
    assert len(traced.spans()) == 9
    assert decision_for(traced.home, _trace("nightly", "ok")) == {
        "decision": "drop", "policy": "rate", "rate": 0.0,
        "decided_ns": decision_for(traced.home, _trace("nightly", "ok"))["decided_ns"]}  # type: ignore[index]
    assert HeldStore(traced.home / "tail.db").count() == 0  # nothing left waiting


def test_slower_than_the_pipelines_p95_is_kept(traced) -> None:
    with OTLPReceiver() as receiver:
        _configure(traced.home, receiver.endpoint)
        for i in range(25):  # history: 25 hourly runs of about a second, in the past day; the last five are
            # the quickest, so that none of the history can itself be "slower than the p95 of the runs before
            # it", whichever of them the store already holds when the collector's side decides
            seconds = 1.0 + (i % 5) * 0.01 if i < 20 else 1.0
            _run(f"h{i}", seconds=seconds, pipeline="hourly", ago=3600 * (25 - i))
        assert pipetrace.force_flush(20)
        assert receiver.spans() == []
        _run("typical", seconds=1.02, pipeline="hourly")
        _run("slow", seconds=3.0, pipeline="hourly")
        assert pipetrace.force_flush(20)
        got = _received(receiver)
    assert set(got) == {_trace("hourly", "slow")}
    run = next(s for s in got[_trace("hourly", "slow")] if s.name == "run hourly")
    assert attrs(run.attributes)["pipetrace.sampling.policy"] == "slow_p95"


def test_a_long_run_is_held_on_disk_and_exported_in_bounded_chunks(traced) -> None:
    with OTLPReceiver() as receiver:
        _configure(traced.home, receiver.endpoint, max_export_batch_size=200)
        with pipetrace.task_span("python", "stream", "long", "consume"):
            for i in range(1500):
                with pipetrace.batch_span("consume", index=i, size=10):
                    pass
        assert pipetrace.force_flush(30)
        held = HeldStore(traced.home / "tail.db")
        assert held.count() == 1501 and receiver.spans() == []  # waiting on disk, not in memory
        now = time.time()
        pipetrace.run_span("python", "stream", "long", start=now - 60, end=now, result="failure")
        assert pipetrace.force_flush(30)
        sizes = [sum(len(ss.spans) for rs in r.resource_spans for ss in rs.scope_spans) for r in receiver.requests]
    assert sum(sizes) == 1502 and max(sizes) <= 512
    assert held.count() == 0


EMIT = textwrap.dedent("""
    import sys, time
    import pipetrace
    role = sys.argv[1]
    pipetrace.configure()
    if role == "tasks":
        for task in ("extract", "transform", "load"):
            with pipetrace.task_span("python", "nightly", "r-restart", task):
                pass
    elif role == "late":
        with pipetrace.task_span("python", "nightly", "r-restart", "cleanup"):
            pass
    else:
        now = time.time()
        pipetrace.run_span("python", "nightly", "r-restart", start=now - 30, end=now, result="failure")
    assert pipetrace.force_flush(30)
""")


def test_a_run_held_across_a_process_restart_is_decided_and_exported_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    trace_id = _trace("nightly", "r-restart")
    with OTLPReceiver() as receiver:
        env = {**os.environ, "PIPETRACE_HOME": str(home), "PIPETRACE_EXPORTERS": "store,otlp",
               "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "PIPETRACE_TAIL_SAMPLING": "1",
               "PIPETRACE_SAMPLE_RATES": "*=0", "PIPETRACE_EXPORT_INTERVAL": "0.05"}

        def step(role: str) -> None:
            proc = subprocess.run([sys.executable, "-c", EMIT, role], env=env, capture_output=True, text=True,
                                  timeout=120)
            assert proc.returncode == 0, proc.stderr

        step("tasks")  # a worker process runs the tasks and exits
        assert receiver.spans() == []
        assert HeldStore(home / "tail.db").count() == 3
        step("end")  # later, another process sees the run end
        names = sorted(s.name for _, s in receiver.wait_for(4))
        assert names == ["run nightly", "task extract", "task load", "task transform"]
        step("end")  # the run end reported again (scheduler retry, second process): not exported twice
        step("late")  # a straggler of a kept run follows it
        time.sleep(0.3)
        spans = receiver.spans()
    assert sorted(s.name for _, s in spans) == [
        "run nightly", "task cleanup", "task extract", "task load", "task transform"]
    assert {s.trace_id.hex() for _, s in spans} == {trace_id}
    assert HeldStore(home / "tail.db").count() == 0
    decision = decision_for(home, trace_id)
    assert decision is not None and decision["policy"] == "failure"


def test_sampled_out_runs_leave_the_local_store_after_the_retention(traced) -> None:
    with OTLPReceiver() as receiver:
        _configure(traced.home, receiver.endpoint, tail_local_retention_h=1 / 3600)  # one second
        _run("dropped")
        _run("kept", fail=True)
        assert pipetrace.force_flush(20)
    assert len(traced.spans(_trace("nightly", "dropped"))) == 2  # kept locally for the retention window
    time.sleep(1.2)
    housekeeping = TailSamplingExporter(
        receiver_less := _NullExporter(), held_path=traced.home / "tail.db",
        policy=TailPolicy(PipelineRates(), slow_ms=None, history=None), store_path=traced.store.path)
    assert housekeeping.collect_garbage()
    assert traced.spans(_trace("nightly", "dropped")) == []
    assert len(traced.spans(_trace("nightly", "kept"))) == 2
    assert receiver_less.exported == 0


class _NullExporter:
    exported = 0

    def export(self, spans):  # pragma: no cover - housekeeping here exports nothing
        self.exported += len(spans)

    def shutdown(self) -> None:
        pass


def test_tail_settings_are_validated() -> None:
    from pipetrace.config import load

    with pytest.raises(pipetrace.ConfigError, match="PIPETRACE_SAMPLE_RATES"):
        load({"PIPETRACE_SAMPLE_RATES": "etl_*=1.5"})
    with pytest.raises(pipetrace.ConfigError, match="PIPETRACE_TAIL_SLOW_MS"):
        load({"PIPETRACE_TAIL_SLOW_MS": "fast"})
    settings = load({"PIPETRACE_TAIL_SAMPLING": "1", "PIPETRACE_SAMPLE_RATES": "etl_*=0.1,billing=1"})
    assert settings.tail_sampling and dict(settings.sample_rates) == {"etl_*": 0.1, "billing": 1.0}
    assert json.dumps(dict(settings.sample_rates))
