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
    run_id = run_id_of(flow_run)
    run = flows.get(run_id)
    return run or Run(RunIdentity(SYSTEM, flow.name, run_id, label_context(getattr(flow_run, "labels", None))))


_last_run: tuple[Any, Any, str] = (None, None, "")  # every task of a flow run asks for its flow run's id


def run_id_of(flow_run: Any) -> str:
    """``str(flow_run.id)``, kept for the flow run asked last (a UUID's str is a Python call, ~1 µs)."""
    global _last_run
    run, uid, text = _last_run  # (one tuple, replaced whole: threads never see half an entry)
    if run is flow_run and flow_run.id is uid:
        return text
    text = str(flow_run.id)
    _last_run = (flow_run, flow_run.id, text)
    return text


def task_span_id(ident: RunIdentity, task_name: str, task_run_id: str, try_number: int) -> int:
    """The task component is ``{task}/{task run id}``: one task runs many times in one flow run."""
    return ident.task_span_id(f"{task_name}/{task_run_id}", None, try_number)


def native_attributes(run: Any, run_id: str, run_type: str, parameters: dict[str, Any] | None
                      ) -> tuple[dict[str, Any], bool]:
    """The attributes Prefect's own RunTelemetry puts on its spans (kept so dashboards keep working), and
    whether they are as the SDK stores them (str/bool/int/float values of exactly those types, the tags a
    tuple of str, no empty key; else the span's own checks clean them, as before)."""
    name = run.name
    attrs: dict[str, Any] = {"prefect.run.name": name, "prefect.run.type": run_type, "prefect.run.id": run_id,
                             "prefect.tags": tuple(str(t) for t in run.tags) if run.tags else ()}
    plain = type(name) is str
    if parameters:
        for key, value in parameters.items():
            attrs[f"prefect.run.parameter.{key}"] = type(value).__name__
    for key, value in (getattr(run, "labels", None) or {}).items():
        if not (key := str(key)).startswith("__"):
            attrs[key] = value if isinstance(value, _PLAIN) else str(value)
            plain = plain and bool(key) and (type(value) in _PLAIN or not isinstance(value, _PLAIN))
    return attrs, plain


_PLAIN = (str, bool, int, float)


_RESULTS = {"COMPLETED": A.RESULT_SUCCESS, "CRASHED": A.RESULT_ERROR, "CANCELLED": A.RESULT_CANCELLATION,
            "CANCELLING": A.RESULT_CANCELLATION, "FAILED": A.RESULT_FAILURE, "FAILED/TimedOut": A.RESULT_TIMEOUT,
            "PENDING/NotReady": A.RESULT_SKIP, "SCHEDULED": A.RESULT_RETRY, "Retrying": A.RESULT_RETRY,
            "AwaitingRetry": A.RESULT_RETRY}
"""``type/name``, else type, else name → cicd result (anything else: failure)."""


def kind_of(state_type: Any) -> str:
    """A state type's plain value (``StateType.COMPLETED`` → ``"COMPLETED"``): its ``_value_`` read directly
    (``.value`` is a Python property call on every enum member)."""
    return str(getattr(state_type, "_value_", state_type))


_results_seen: dict[tuple[str, str], str] = {}  # (type, name) → result: a handful of pairs in any process


def result_of(state: Any) -> str:
    """cicd result value for a Prefect state."""
    kind, name = kind_of(getattr(state, "type", None)).upper(), getattr(state, "name", "") or ""
    if (result := _results_seen.get((kind, name))) is None:
        result = _RESULTS.get(f"{kind}/{name}") or _RESULTS.get(kind) or _RESULTS.get(name, A.RESULT_FAILURE)
        if len(_results_seen) < 256:  # (state names are free text: bounded)
            _results_seen[kind, name] = result
    return result


def state_attrs(state: Any) -> dict[str, Any] | None:
    """A state's attributes on the span it ends: only a result read from the cache is marked (its name
    and type are the attributes of the state's event on that span, not repeated)."""
    return {CACHED: True} if getattr(state, "name", None) == "Cached" else None
