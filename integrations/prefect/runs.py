"""Prefect runs → pipetrace identities, span ids and attributes (the one place that reads Prefect's models).

A flow run is a pipetrace run: ``identity("prefect", flow name, flow run id)``. A task run attempt's span
id is derived from its task run id and try number, so every process that executes the attempt (thread,
process-pool worker) computes the same id without shared state.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import SpanContext
from pipetrace import attributes as A
from pipetrace.adapter import upstream_from
from pipetrace.adapter.runs import Run, Runs, run_identity
from pipetrace.identity import RunIdentity
from prefect.context import FlowRunContext

SYSTEM = "prefect"
_PLAIN = (str, bool, int, float)
LABEL = "__OTEL_TRACEPARENT"

CACHED = "prefect.task_run.cached"

flows = Runs()
"""Flow runs executing in this process (their run span and batches)."""


def label_context(labels: Any) -> SpanContext | None:
    """The span context a run's ``__OTEL_TRACEPARENT`` label names, if valid."""
    return upstream_from(labels, "prefect run label", traceparent=LABEL)


def flow_identity(flow_name: str, flow_run: Any, upstream: SpanContext | None) -> RunIdentity:
    """Identity of a flow run; ``upstream`` (a caller span) wins for the trace id."""
    return run_identity(SYSTEM, flow_name, str(flow_run.id), upstream)


def flow_info_for_context(flow_ctx: Any = None) -> Run | None:
    """The run of the flow run in a FlowRunContext (default: the current one): from this process, or rebuilt
    from the run's label (a process-pool worker: the label's span is the run span the flow's own process
    emits; its trace id is what matters here)."""
    flow_ctx = flow_ctx or FlowRunContext.get()
    flow_run, flow = getattr(flow_ctx, "flow_run", None), getattr(flow_ctx, "flow", None)
    if flow_run is None or flow is None:
        return None
    run_id = str(flow_run.id)
    run = flows.get(run_id)
    return run or Run(RunIdentity(SYSTEM, flow.name, run_id, label_context(getattr(flow_run, "labels", None))))


def task_span_id(ident: RunIdentity, task_name: str, task_run_id: str, try_number: int) -> int:
    """The task component is ``{task}/{task run id}``: one task runs many times in one flow run."""
    return ident.task_span_id(f"{task_name}/{task_run_id}", None, try_number)


def native_attributes(run: Any, run_id: str, run_type: str, parameters: dict[str, Any] | None
                      ) -> tuple[dict[str, Any], bool]:
    """The attributes Prefect's own RunTelemetry puts on its spans (kept so dashboards keep working), and whether
    they are as the SDK stores them (values of exactly str/bool/int/float, the tags a tuple, no empty key)."""
    attrs: dict[str, Any] = {"prefect.run.name": run.name, "prefect.run.type": run_type, "prefect.run.id": run_id,
                             "prefect.tags": tuple(str(t) for t in run.tags or ()),
                             **{f"prefect.run.parameter.{k}": type(v).__name__ for k, v in (parameters or {}).items()}}
    plain = type(run.name) is str
    for key, value in (getattr(run, "labels", None) or {}).items():
        if not (key := str(key)).startswith("__"):
            attrs[key] = value if isinstance(value, _PLAIN) else str(value)
            plain = plain and bool(key) and (type(value) in _PLAIN or not isinstance(value, _PLAIN))
    return attrs, plain


_RESULTS = {"COMPLETED": A.RESULT_SUCCESS, "CRASHED": A.RESULT_ERROR, "CANCELLED": A.RESULT_CANCELLATION,
            "CANCELLING": A.RESULT_CANCELLATION, "FAILED": A.RESULT_FAILURE, "FAILED/TimedOut": A.RESULT_TIMEOUT,
            "PENDING/NotReady": A.RESULT_SKIP, "SCHEDULED": A.RESULT_RETRY, "Retrying": A.RESULT_RETRY,
            "AwaitingRetry": A.RESULT_RETRY}
"""``type/name``, else type, else name → cicd result (anything else: failure)."""


def _kind(state: Any) -> str:
    kind = getattr(state, "type", None)
    return str(getattr(kind, "_value_", kind))  # (an enum member's ``.value`` is a Python property call)


def result_of(state: Any) -> str:
    """cicd result value for a Prefect state."""
    kind, name = _kind(state).upper(), getattr(state, "name", "") or ""
    return _RESULTS.get(f"{kind}/{name}") or _RESULTS.get(kind) or _RESULTS.get(name, A.RESULT_FAILURE)


def state_attrs(state: Any) -> dict[str, Any] | None:
    """A state's attributes on the span it ends: only a result read from the cache is marked (its name
    and type are the attributes of the state's event on that span, not repeated)."""
    return {CACHED: True} if getattr(state, "name", None) == "Cached" else None
