"""The run registry and run identity of the adapter API."""

from __future__ import annotations

from pipetrace.adapter.runs import Run, Runs, current_span_context, run_identity
from pipetrace.identity import RunIdentity


def test_run_registry_and_identity() -> None:
    runs = Runs()
    run = runs.add(Run(RunIdentity("test", "pipe", "r4")))
    assert runs.get("r4") is run and (run.pipeline, run.run_id) == ("pipe", "r4")
    assert runs.pop("r4") is run and runs.get("r4") is None
    own = run.ident.run_span_context()
    assert run_identity("test", "pipe", "r4", own).upstream is None  # never its own parent
    caller = RunIdentity("test", "caller", "x").run_span_context()
    assert run_identity("test", "pipe", "r4", caller).trace_id == caller.trace_id
    assert current_span_context() is None
