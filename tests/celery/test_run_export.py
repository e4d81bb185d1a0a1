"""The worker's run closer sends each closed run's span through the exporters too (OTLP here), not only
into the store: on a real prefork worker (2 children, recycled after every task, the case where an
export running in the forking main process once left children losing spans), a chain and a group are
each exactly one ``run {pipeline}`` span at an OTLP receiver and in the store, with the right result,
and every task span the children made reaches the receiver."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import APP_DIR, BIN, REDIS, ROOT, broker_url, start_worker
from pipetrace import attributes as A
from pipetrace.store import SpanStore

sys.path.insert(0, str(ROOT / "tests"))
from otlp_receiver import OTLPReceiver, attrs  # noqa: E402

SCENARIO = ROOT / "tests" / "celery" / "runs_scenario.py"


def _run_spans_at(receiver: OTLPReceiver, trace_id: str) -> list[Any]:
    return [s for _, s in receiver.spans() if s.trace_id.hex() == trace_id and s.name.startswith("run ")]


@pytest.mark.parametrize("tail", ["0", "1"])
def test_closed_runs_reach_otlp_once(tmp_path: Path, tail: str) -> None:
    """With tail sampling on, the run span is what ends each run's hold: the children's held spans follow."""
    with OTLPReceiver() as receiver:
        env = {"PIPETRACE_TAIL_SAMPLING": tail, "PIPETRACE_SAMPLE_RATES": "*=1",
               "PIPETRACE_RUN_SWEEP": "0.5", "PIPETRACE_RUN_SETTLE": "1", "PIPETRACE_RUN_TIMEOUT": "30",
               "PIPETRACE_EXPORTERS": "store,otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
               "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
        home = tmp_path / "home"
        worker = start_worker(home, broker_url("redis"), REDIS, extra_env=env, extra=["--max-tasks-per-child", "1"])
        store = SpanStore(home / "traces.db")
        try:
            out = subprocess.run([str(BIN / "pipetrace"), "run", "--", str(BIN / "python"), str(SCENARIO),
                                  "chain_group"], cwd=APP_DIR, env=dict(worker.env, PYTHONPATH=str(APP_DIR)),
                                 capture_output=True, timeout=120)
            assert out.returncode == 0, out.stderr.decode()[-3000:]
            ids = json.loads(out.stdout.decode().strip().splitlines()[-1])
            traces: dict[str, str] = {}
            deadline = time.monotonic() + 45
            while time.monotonic() < deadline:
                for shape, got in ids.items():
                    rows = store._query("SELECT trace_id FROM spans WHERE json_extract(attributes, ?)=? LIMIT 1",
                                        (f'$."{A.MESSAGING_MESSAGE_ID}"', got["task"]))
                    if rows:
                        traces[shape] = rows[0][0]
                if len(traces) == 2 and all(_run_spans_at(receiver, t) for t in traces.values()):
                    break
                time.sleep(0.5)
            time.sleep(2)  # a second emission of the same run would arrive by now (sweep every 0.5 s)
        finally:
            worker.stop()
        assert set(traces) == {"chain", "group"}, worker.log.read_text()[-3000:]
        for shape, trace_id in traces.items():
            in_store = store.trace(trace_id)
            stored_runs = [s for s in in_store if s.is_run]
            at_receiver = _run_spans_at(receiver, trace_id)
            assert len(stored_runs) == 1, (shape, stored_runs)
            assert len(at_receiver) == 1, (shape, [s.name for s in at_receiver])
            run = at_receiver[0]
            assert run.name == stored_runs[0].name
            assert run.span_id.hex() == stored_runs[0].span_id
            assert attrs(run.attributes)[A.PIPELINE_RESULT] == "success"
            assert attrs(run.attributes)[A.PIPELINE_RUN_ID] == ids[shape]["run_id"]
            # no span lost by the recycled children: every stored span of the run reached the receiver
            received = {s.span_id.hex() for _, s in receiver.spans() if s.trace_id.hex() == trace_id}
            assert {s.span_id for s in in_store} <= received, shape
        store.close()
