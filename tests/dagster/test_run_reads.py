"""What the adapter reads back from Dagster's storage: a run created in this process is known from its
creation, so tracing it adds no read of the run storage (only a step process reads the run)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import fan_in
import pytest
from conftest import by_step
from dagster._core.instance import DagsterInstance

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
READS = ("get_run_by_id", "get_run_record_by_id", "get_execution_plan_snapshot", "all_logs")


def _counting(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Calls of the instance's read methods (by Dagster itself and by pipetrace) from now on."""
    counts: Counter[str] = Counter()

    def counted(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def read(self: DagsterInstance, *args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return method(self, *args, **kwargs)
        return read

    for name in READS:
        monkeypatch.setattr(DagsterInstance, name, counted(name, getattr(DagsterInstance, name)))
    return counts


def test_a_run_created_in_process_adds_no_storage_read(instrumented, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipetrace.integrations.dagster import instrument, uninstrument

    fan_in.fan_in_job.execute_in_process()  # this process reads the job's plan once: not what is counted
    counts = _counting(monkeypatch)
    traced = fan_in.fan_in_job.execute_in_process(tags={"traceparent": TP})
    on = dict(counts)
    counts.clear()
    uninstrument()
    try:
        assert fan_in.fan_in_job.execute_in_process(tags={"traceparent": TP}).success
    finally:
        instrument()
    assert on == dict(counts)
    assert traced.success
    spans = instrumented.spans("0af7651916cd43dd8448eb211c80319c")  # the caller's trace: tags kept at creation
    run = next(s for s in spans if s.name == "run fan_in_job")
    assert run.parent_span_id == "b7ad6b7169203331"
    assert {s.parent_span_id for s in by_step(spans).values()} == {run.span_id}
    assert len(by_step(spans)) == 5
