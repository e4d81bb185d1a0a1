"""Task runners keep the trace: the thread pool (default, see test_examples) and the process pool,
whose spawned worker processes are instrumented through Prefect's plugin hook."""

from __future__ import annotations

import os

import pt_pool
from conftest import dedent, tree
from pipetrace import attributes as A
from pipetrace.identity import RunIdentity


def test_process_pool_keeps_the_trace(instrumented, monkeypatch) -> None:  # noqa: ANN001
    # spawned workers import prefect afresh: Prefect's plugin hook instruments them
    monkeypatch.setenv("PREFECT_PLUGINS_ENABLED", "1")
    state = pt_pool.pooled(return_state=True)
    assert state.is_completed(), state
    assert state.result() == 15
    run_id = str(state.state_details.flow_run_id)
    spans = instrumented.spans()
    assert len({s.trace_id for s in spans}) == 1
    assert len({s.span_id for s in spans}) == len(spans)
    ident = RunIdentity("prefect", "pt_pool", run_id)
    assert spans[0].trace_id == f"{ident.trace_id:032x}"
    assert tree(spans) == dedent("""
        run pt_pool result=success
          batch double size=3
            task double try=1 i=0 result=success
            task double try=1 i=1 result=success
            task double try=1 i=2 result=success
          task base try=1 result=success
          task total try=1 result=success
    """)
    me = os.getpid()
    pids = {s.resource.get("process.pid") for s in spans if s.name == "task double"}
    assert me not in pids and pids, "mapped tasks ran in worker processes"
    run = next(s for s in spans if s.name == "run pt_pool")
    assert run.resource.get("process.pid") == me
    for s in spans:
        if s.name.startswith("task "):
            assert s.attributes[A.PIPELINE_RUN_ID] == run_id
