"""Hand-built spans for analysis tests: exact times, exact parents, no orchestrator needed."""

from __future__ import annotations

from typing import Any

from pipetrace import attributes as A
from pipetrace.store import SpanRecord

S = 10**9  # ns per second
T0 = 1_700_000_000 * S


def span(trace: str, sid: str, parent: str | None, name: str, start_s: float, end_s: float, *,
         kind: str = "INTERNAL", status: str = "OK", links: list[str] | None = None,
         attrs: dict[str, Any] | None = None,
         pipeline: str = "p", run_id: str = "r1", t0: int = T0) -> SpanRecord:
    attributes: dict[str, Any] = {A.SYSTEM: "python", A.PIPELINE_NAME: pipeline, A.PIPELINE_RUN_ID: run_id}
    if name.startswith("task "):
        attributes[A.TASK_NAME] = name[5:]
    attributes.update(attrs or {})
    return SpanRecord(trace, sid.rjust(16, "0"), parent.rjust(16, "0") if parent else None, name, kind,
                      t0 + int(start_s * S), t0 + int(end_s * S), status, attributes=attributes,
                      links=[{"trace_id": trace, "span_id": lk.rjust(16, "0"), "attributes": {A.LINK_KIND: "xcom"}}
                             for lk in (links or [])])


def run(trace: str, start_s: float, end_s: float, *, result: str = "success", pipeline: str = "p",
        run_id: str = "r1", sid: str = "1", attrs: dict[str, Any] | None = None, t0: int = T0,
        parent: str | None = None) -> SpanRecord:
    extra = {A.PIPELINE_RESULT: result, **(attrs or {})}
    return span(trace, sid, parent, f"run {pipeline}", start_s, end_s, kind="SERVER",
                status="ERROR" if result in A.FAILED_RESULTS else "OK", attrs=extra, pipeline=pipeline,
                run_id=run_id, t0=t0)


def tid(n: int) -> str:
    return f"{n:032x}"
