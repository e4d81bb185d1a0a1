"""Prefect runs → pipetrace identities, span ids and attributes (the one place that reads Prefect's models).

A flow run is a pipetrace run: ``identity("prefect", flow name, flow run id)``. A task run attempt's span
id is derived from its task run id and try number, so every process that executes the attempt (thread,
process-pool worker) computes the same id without shared state.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pipetrace
from opentelemetry import trace
from opentelemetry.trace import SpanContext
from pipetrace import attributes as A
from pipetrace.identity import RunIdentity

SYSTEM = "prefect"
LABEL = "__OTEL_TRACEPARENT"

FLOW_RUN_ID = "prefect.flow_run.id"
FLOW_RUN_NAME = "prefect.flow_run.name"
FLOW = "prefect.flow"
TASK_RUN_ID = "prefect.task_run.id"
TASK_RUN_NAME = "prefect.task_run.name"
TASK = "prefect.task"
STATE_NAME = "prefect.state.name"
STATE_TYPE = "prefect.state.type"
CACHED = "prefect.task_run.cached"


@dataclass
class FlowInfo:
    """What a process knows about a flow run it is executing (the run span and its batches)."""

    ident: RunIdentity
    flow: str
    run_id: str
    batches: dict[str, Any] = field(default_factory=dict)
    map_calls: dict[str, int] = field(default_factory=dict)


_lock = threading.Lock()
_flows: dict[str, FlowInfo] = {}


def register_flow(info: FlowInfo) -> None:
    with _lock:
        _flows[info.run_id] = info


def pop_flow(run_id: str) -> FlowInfo | None:
    with _lock:
        return _flows.pop(run_id, None)


def label_context(labels: Any) -> SpanContext | None:
    """The span context carried in a run's ``__OTEL_TRACEPARENT`` label, if any and valid."""
    try:
        value = (labels or {}).get(LABEL)
    except Exception:
        return None
    if not value:
        return None
    return pipetrace.carriers.span_context_of({"traceparent": str(value)}, source="prefect run label")


def current_span_context() -> SpanContext | None:
    sc = trace.get_current_span().get_span_context()
    return sc if sc.is_valid else None


def flow_identity(flow_name: str, flow_run: Any, upstream: SpanContext | None) -> RunIdentity:
    """Identity of a flow run; ``upstream`` (a caller span) wins for the trace id."""
    ident = RunIdentity(SYSTEM, flow_name, str(flow_run.id), None)
    if upstream is not None and upstream.span_id == ident.run_span_id:
        upstream = None  # our own label from an earlier execution of this run: never our own parent
    return RunIdentity(SYSTEM, flow_name, str(flow_run.id), upstream)


def flow_info_for_context(flow_ctx: Any) -> FlowInfo | None:
    """The FlowInfo of the flow run in a FlowRunContext: from this process, or rebuilt from the run's
    label (a process-pool worker, where the flow span lives in another process)."""
    flow_run = getattr(flow_ctx, "flow_run", None)
    flow = getattr(flow_ctx, "flow", None)
    if flow_run is None or flow is None:
        return None
    run_id = str(flow_run.id)
    with _lock:
        info = _flows.get(run_id)
    if info is not None:
        return info
    # The label holds the run span written by the process running the flow: it carries the trace id
    # (its span id only matters for the run span itself, which that other process emits).
    carried = label_context(getattr(flow_run, "labels", None))
    return FlowInfo(RunIdentity(SYSTEM, flow.name, run_id, carried), flow.name, run_id)


def task_span_id(ident: RunIdentity, task_name: str, task_run_id: str, try_number: int) -> int:
    """A task attempt's span id; the task component is ``{task}/{task run id}`` because one task
    runs many times in one flow run."""
    return ident.task_span_id(f"{task_name}/{task_run_id}", None, try_number)


def native_attributes(run: Any, run_type: str, parameters: dict[str, Any] | None) -> dict[str, Any]:
    """The attributes Prefect's own RunTelemetry puts on its spans (kept so dashboards keep working)."""
    attrs: dict[str, Any] = {
        "prefect.run.name": run.name,
        "prefect.run.type": run_type,
        "prefect.run.id": str(run.id),
        "prefect.tags": [str(t) for t in (run.tags or [])],
    }
    for key, value in (parameters or {}).items():
        attrs[f"prefect.run.parameter.{key}"] = type(value).__name__
    for key, value in (getattr(run, "labels", None) or {}).items():
        if not str(key).startswith("__"):
            attrs[str(key)] = value if isinstance(value, (str, bool, int, float)) else str(value)
    return attrs


def result_of(state: Any) -> str:
    """cicd result value for a Prefect state."""
    kind = str(getattr(getattr(state, "type", None), "value", getattr(state, "type", ""))).upper()
    name = getattr(state, "name", "") or ""
    if kind == "COMPLETED":
        return A.RESULT_SUCCESS
    if kind == "FAILED":
        return A.RESULT_TIMEOUT if name == "TimedOut" else A.RESULT_FAILURE
    if kind == "CRASHED":
        return A.RESULT_ERROR
    if kind in ("CANCELLED", "CANCELLING"):
        return A.RESULT_CANCELLATION
    if kind == "PENDING" and name == "NotReady":
        return A.RESULT_SKIP
    if kind == "SCHEDULED" or name in ("Retrying", "AwaitingRetry"):
        return A.RESULT_RETRY
    return A.RESULT_FAILURE


def state_attrs(state: Any) -> dict[str, Any]:
    kind = getattr(getattr(state, "type", None), "value", getattr(state, "type", None))
    return {STATE_NAME: getattr(state, "name", None) or str(kind), STATE_TYPE: str(kind)}
