"""Prefect's run-telemetry seam, taken over: one pipetrace span per flow run and per task-run attempt.

Prefect 3 engines call a ``RunTelemetry`` object at every step of a run (span start with the run and its
parameters, each state change, exceptions, end) and make its ``span`` current while the run executes.
:class:`PipetraceRunTelemetry` is that object with pipetrace's span in place of Prefect's: derived ids,
``run {flow}`` / ``task {task}`` names, the ``cicd.pipeline.*`` attributes plus Prefect's own, and one
span per task-run *attempt*. Because the engine makes it current, Prefect's own behaviour builds on it:
user spans nest under it, states carry its traceparent, and consumed futures are linked to it. Prefect's
native span is never started, so there is exactly one span per run whether native telemetry is on or
off; with it on, the flow run's ``__OTEL_TRACEPARENT`` label is written as Prefect would.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pipetrace
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode
from pipetrace import attributes as A
from pipetrace.machinery import start_span
from pipetrace.processing.runtime import get_tracer
from pipetrace.redaction.text import status_description
from pipetrace.spans import _clean_attrs
from pipetrace.util.ratelimit import warn_once_per
from prefect.telemetry.run_telemetry import RunTelemetry

from . import batches, links, runs

log = logging.getLogger("pipetrace.prefect")

_open_lock = threading.Lock()
_open: dict[str, weakref.WeakSet[PipetraceRunTelemetry]] = {}


def _ns(value: Any) -> int | None:
    try:
        return int(value.timestamp() * 1e9)
    except Exception:
        return None


def _traceparent(span: Span) -> str | None:
    return pipetrace.inject({}, context=trace.set_span_in_context(span)).get("traceparent")


def _warn(what: str, exc: BaseException) -> None:
    warn_once_per(log, f"prefect-{what}", "pipetrace: prefect %s failed (run continues): %r", what, exc)


@dataclass(eq=False)  # identity-hashed: kept in weak sets
class PipetraceRunTelemetry(RunTelemetry):
    """RunTelemetry whose span is pipetrace's (see module doc). Every override is guarded: on any
    pipetrace error it falls back to Prefect's own behaviour."""

    __hash__ = object.__hash__  # RunTelemetry is an eq-dataclass (unhashable); these live in weak sets

    if TYPE_CHECKING:  # Prefect's own field, typed for mypy runs without Prefect installed
        span: Span | None = None

    engine: Any = None  # weakref to the engine that owns this object
    _pt_kind: str = ""
    _pt_run: Any = None
    _pt_flow: runs.FlowInfo | None = None
    _pt_owns_flow: bool = False
    _pt_task: str = ""
    _pt_parent: Context | None = None
    _pt_member: batches.Member | None = None
    _pt_base_attrs: dict[str, Any] = field(default_factory=dict)
    _pt_try: int = 0
    _pt_token: Any = None
    _pt_running_seen: bool = False
    _pt_final: Any = None
    _pt_ours: bool = False
    _pt_client: Any = None  # the engine's sync client (reads back upstream runs this process did not see)
    _pt_links: list[Any] = field(default_factory=list)
    _pt_unresolved: list[Any] = field(default_factory=list)  # inputs whose producer had not started yet
    _pt_subflow_inputs: Any = None  # task_inputs of the task run standing for this subflow in its parent

    # ---- start ---------------------------------------------------------------------------------------
    def start_span(self, run: Any, client: Any, parameters: dict[str, Any] | None = None) -> Span | None:
        self._pt_client = client
        self._pt_subflow_inputs = _subflow_inputs(run, client)
        span = self._pt_start_guarded(run, parameters)
        if span is None:
            return super().start_span(run, client, parameters)
        if self._enabled and self._pt_kind == "flow":
            try:  # what Prefect's native telemetry does: the run's trace is readable from its labels
                client.update_flow_run_labels(run.id, {runs.LABEL: run.labels[runs.LABEL]})
            except Exception as exc:
                _warn("label update", exc)
        return span

    async def async_start_span(self, run: Any, client: Any, parameters: dict[str, Any] | None = None
                               ) -> Span | None:
        self._pt_subflow_inputs = await _async_subflow_inputs(run, client)
        span = self._pt_start_guarded(run, parameters)
        if span is None:
            return await super().async_start_span(run, client, parameters)
        if self._enabled and self._pt_kind == "flow":
            try:
                await client.update_flow_run_labels(run.id, {runs.LABEL: run.labels[runs.LABEL]})
            except Exception as exc:
                _warn("label update", exc)
        return span

    def _pt_start_guarded(self, run: Any, parameters: dict[str, Any] | None) -> Span | None:
        try:
            from prefect.client.schemas import TaskRun

            if isinstance(run, TaskRun):
                span = self._pt_start_task(run, parameters)
            else:
                span = self._pt_start_flow(run, parameters)
            if span is None or not span.get_span_context().is_valid:
                return None
            self.span = span
            self._pt_ours = True
            return span
        except Exception as exc:
            _warn("span start", exc)
            return None

    def _pt_start_flow(self, run: Any, parameters: dict[str, Any] | None) -> Span | None:
        engine = self.engine() if self.engine is not None else None
        flow = getattr(engine, "flow", None)
        if flow is None:
            return None
        self._pt_kind = "flow"
        self._pt_run = run
        pipetrace.set_component("prefect-flow", override=False)  # a flow started from a worker keeps its name
        upstream = runs.current_span_context() or runs.label_context(run.labels)
        ident = runs.flow_identity(flow.name, run, upstream)
        attrs = runs.native_attributes(run, "flow", parameters)
        attrs.update({A.SYSTEM: runs.SYSTEM, A.PIPELINE_NAME: flow.name, A.PIPELINE_RUN_ID: str(run.id),
                      runs.FLOW_RUN_ID: str(run.id), runs.FLOW: flow.name, runs.FLOW_RUN_NAME: run.name})
        parent = ident.upstream_context()
        inputs, _ = links.input_links(self._pt_subflow_inputs, self._pt_client, ident.trace_id)
        span = start_span(get_tracer(), A.run_span_name(flow.name), context=parent or Context(), kind=SpanKind.SERVER,
                          attributes=_clean_attrs(attrs), links=inputs,
                          trace_id=None if parent is not None else ident.trace_id, span_id=ident.run_span_id)
        links.remember(str(run.id), span)
        info = runs.FlowInfo(ident, flow.name, str(run.id))
        self._pt_flow = info
        self._pt_owns_flow = True
        runs.register_flow(info)
        traceparent = _traceparent(span)
        if traceparent:
            run.labels[runs.LABEL] = traceparent  # in memory, as Prefect does: subflows, workers, deployments
        return span

    def _pt_start_task(self, run: Any, parameters: dict[str, Any] | None) -> Span | None:
        from prefect.context import FlowRunContext

        engine = self.engine() if self.engine is not None else None
        task = getattr(engine, "task", None)
        if task is None:
            return None
        self._pt_kind = "task"
        self._pt_run = run
        self._pt_task = task.name
        flow_ctx = FlowRunContext.get()
        info = runs.flow_info_for_context(flow_ctx) if flow_ctx is not None else None
        member = batches.take_member(task.name, info)
        if info is None:  # a task called outside any flow: its own run
            upstream = runs.current_span_context()
            ident = runs.RunIdentity(runs.SYSTEM, task.name, str(run.id), upstream)
            info = runs.FlowInfo(ident, task.name, str(run.id))
        self._pt_flow = info
        if member is not None and member.batch.flow.run_id != info.run_id:
            member = None
        self._pt_member = member
        current = runs.current_span_context()
        if member is not None:
            parent = member.batch.context()
        elif current is not None and current.trace_id == info.ident.trace_id:
            parent = otel_context.get_current()
        else:
            parent = info.ident.run_context()
        self._pt_parent = parent
        attrs = runs.native_attributes(run, "task", parameters)
        attrs.update({A.SYSTEM: runs.SYSTEM, A.PIPELINE_NAME: info.flow, A.PIPELINE_RUN_ID: info.run_id,
                      A.TASK_NAME: task.name, A.TASK_RUN_ID: str(run.id), runs.TASK_RUN_ID: str(run.id),
                      runs.TASK: task.name, runs.TASK_RUN_NAME: run.name, runs.FLOW: info.flow,
                      runs.FLOW_RUN_ID: info.run_id})
        if member is not None:
            attrs[A.MAP_INDEX] = member.map_index
        self._pt_base_attrs = _clean_attrs(attrs)
        self._pt_links, self._pt_unresolved = links.input_links(getattr(run, "task_inputs", None),
                                                                trace_id=info.ident.trace_id, defer=True)
        with _open_lock:
            _open.setdefault(info.run_id, weakref.WeakSet()).add(self)
        return self._pt_begin_attempt(max(1, int(run.run_count or 0) + 1), None)

    def _pt_begin_attempt(self, try_number: int, start_ns: int | None) -> Span:
        info = self._pt_flow
        assert info is not None
        self._pt_try = try_number
        self._pt_running_seen = False
        attrs = dict(self._pt_base_attrs)
        attrs[A.TRY_NUMBER] = try_number
        span = start_span(get_tracer(), A.task_span_name(self._pt_task), context=self._pt_parent,
                          kind=SpanKind.INTERNAL, attributes=attrs, start_time=start_ns, links=self._pt_links,
                          span_id=runs.task_span_id(info.ident, self._pt_task, str(self._pt_run.id), try_number))
        links.remember(str(self._pt_run.id), span)
        return span

    # ---- state changes -------------------------------------------------------------------------------
    def update_state(self, new_state: Any) -> None:
        if not self._pt_ours:
            return super().update_state(new_state)
        try:
            self._pt_on_state(new_state)
        except Exception as exc:
            _warn("state change", exc)
        super().update_state(new_state)  # the state event, on the attempt's span

    def _pt_on_state(self, state: Any) -> None:
        kind = str(getattr(state.type, "value", state.type))
        if self._pt_kind != "task":
            if state.is_final():
                self._pt_final = state
            return
        run = self._pt_run
        if kind == "RUNNING":
            run_count = int(getattr(run, "run_count", 0) or 0)
            if self.span is None or run_count > self._pt_try:
                # a retry: the previous attempt (if still open) ends here, the next one begins
                if self.span is not None:
                    self._pt_finish(result=A.RESULT_RETRY, end_ns=_ns(state.timestamp))
                span = self._pt_begin_attempt(max(run_count, self._pt_try + 1), _ns(state.timestamp))
                self.span = span
                self._pt_token = otel_context.attach(trace.set_span_in_context(span))
            if not self._pt_running_seen and self.span is not None:
                self._pt_running_seen = True
                if self._pt_unresolved:
                    self._pt_link_late_inputs(self.span)
                start = getattr(self.span, "start_time", None)
                ts = _ns(state.timestamp)
                if start and ts and ts >= start:
                    self.span.set_attribute(A.QUEUED_MS, round((ts - start) / 1e6, 3))
        elif kind == "SCHEDULED" and self.span is not None:  # AwaitingRetry: this attempt is over
            self._pt_finish(result=A.RESULT_RETRY, end_ns=_ns(state.timestamp), state=state)
        elif kind == "PENDING" and state.name == "NotReady" and self.span is not None:
            # upstream failed: the task never runs, and Prefect never ends its span
            self._pt_finish(result=A.RESULT_SKIP, end_ns=_ns(state.timestamp), state=state)
            self._pt_close()
        elif state.is_final():
            self._pt_final = state

    def _pt_link_late_inputs(self, span: Span) -> None:
        """Inputs whose producers had not started when this run did: finished now (the engine resolved
        the parameters before Running), so their spans are known."""
        info = self._pt_flow
        entries, self._pt_unresolved = self._pt_unresolved, []
        for lk in links.resolve(entries, self._pt_client, info.ident.trace_id if info is not None else None):
            span.add_link(lk.context, lk.attributes)
            self._pt_links.append(lk)

    # ---- end -----------------------------------------------------------------------------------------
    def end_span_on_success(self) -> None:
        if not self._pt_ours:
            return super().end_span_on_success()
        self._pt_end_guarded(None)

    def end_span_on_failure(self, terminal_message: str | None = None) -> None:
        if not self._pt_ours:
            return super().end_span_on_failure(terminal_message)
        self._pt_end_guarded(terminal_message or "Run failed")

    def update_run_name(self, name: str) -> None:
        if not self._pt_ours:
            return super().update_run_name(name)
        try:  # span names stay low-cardinality: the generated run name is an attribute only
            if self.span is not None:
                self.span.set_attribute("prefect.run.name", name)
                key = runs.FLOW_RUN_NAME if self._pt_kind == "flow" else runs.TASK_RUN_NAME
                self.span.set_attribute(key, name)
                self._pt_base_attrs["prefect.run.name"] = name
                self._pt_base_attrs[runs.TASK_RUN_NAME] = name
        except Exception as exc:
            _warn("run name", exc)

    def _pt_end_guarded(self, failure_message: str | None) -> None:
        try:
            if self.span is None:
                return
            final = self._pt_final
            if final is not None:
                result = runs.result_of(final)
            else:
                result = A.RESULT_FAILURE if failure_message is not None else A.RESULT_SUCCESS
            self._pt_finish(result=result, end_ns=None, state=final, message=failure_message)
            self._pt_close()
        except Exception as exc:
            _warn("span end", exc)
            self.span = None

    def _pt_finish(self, *, result: str, end_ns: int | None, state: Any = None, message: str | None = None
                   ) -> None:
        """End the open span (a task attempt or the flow run) with ``result``."""
        span = self.span
        if span is None:
            return
        self.span = None
        key = A.PIPELINE_RESULT if self._pt_kind == "flow" else A.TASK_RESULT
        if state is not None:
            for k, v in runs.state_attrs(state).items():
                span.set_attribute(k, v)
            if state.name == "Cached":
                span.set_attribute(runs.CACHED, True)
        span.set_attribute(key, result)
        if result in A.FAILED_RESULTS:
            description = status_description(message or getattr(state, "message", None) or result)
            span.set_status(Status(StatusCode.ERROR, description))
            if not _has(span, A.ERROR_TYPE):
                span.set_attribute(A.ERROR_TYPE, _error_type(state) or result)
        elif result == A.RESULT_SUCCESS:
            span.set_status(Status(StatusCode.OK))
        elif result == A.RESULT_RETRY and _has(span, A.ERROR_TYPE):
            span.set_status(Status(StatusCode.ERROR, "attempt failed; retried"))
        if self._pt_token is not None:
            token, self._pt_token = self._pt_token, None
            if trace.get_current_span() is span:
                otel_context.detach(token)
        end = end_ns or time.time_ns()
        span.end(end_time=end)
        member = self._pt_member
        if member is not None:
            member.batch.member_ended(end)

    def _pt_close(self) -> None:
        """The run is over: a flow run also closes what it left open and emits its batches."""
        info = self._pt_flow
        if info is None:
            return
        if self._pt_kind == "task":
            with _open_lock:
                group = _open.get(info.run_id)
                if group is not None:
                    group.discard(self)
            return
        if self._pt_owns_flow:
            sweep(info.run_id)
            batches.emit_all(info)
            runs.pop_flow(info.run_id)

    def record_exception(self, exc: BaseException) -> None:
        if not self._pt_ours:
            return super().record_exception(exc)
        try:
            if self.span is not None:
                self.span.record_exception(exc)
                self.span.set_attribute(A.ERROR_TYPE, _type_name(exc))
        except Exception as err:
            _warn("exception record", err)


def _subflow_inputs(run: Any, client: Any) -> Any:
    """A subflow's parameters as Prefect recorded them: the task_inputs of its parent task run."""
    parent = getattr(run, "parent_task_run_id", None)
    if parent is None or client is None or type(run).__name__ != "FlowRun":
        return None
    try:
        return client.read_task_run(parent).task_inputs
    except Exception as exc:
        _warn("subflow inputs", exc)
        return None


async def _async_subflow_inputs(run: Any, client: Any) -> Any:
    parent = getattr(run, "parent_task_run_id", None)
    if parent is None or client is None or type(run).__name__ != "FlowRun":
        return None
    try:
        return (await client.read_task_run(parent)).task_inputs
    except Exception as exc:
        _warn("subflow inputs", exc)
        return None


def _has(span: Span, key: str) -> bool:
    attrs = getattr(span, "attributes", None) or {}
    return key in attrs


def _type_name(exc: BaseException) -> str:
    t = type(exc)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _error_type(state: Any) -> str | None:
    if state is None:
        return None
    name = getattr(state, "name", None)
    return str(name) if name else None


def sweep(flow_run_id: str) -> None:
    """End task attempts still open when their flow run ends (a timeout Prefect never ends, a task
    abandoned by a crash), at their final state's time when known."""
    with _open_lock:
        group = _open.pop(flow_run_id, None)
    for tel in list(group or ()):
        try:
            if tel.span is None:
                continue
            final = tel._pt_final
            if final is not None:
                tel._pt_finish(result=runs.result_of(final), end_ns=_ns(final.timestamp), state=final)
            else:
                tel._pt_finish(result=A.RESULT_ERROR, end_ns=None, message="task run abandoned by its flow run")
        except Exception as exc:
            _warn("sweep", exc)


def sweep_all() -> None:
    with _open_lock:
        ids = list(_open)
    for run_id in ids:
        sweep(run_id)


__all__ = ["INVALID_SPAN", "PipetraceRunTelemetry", "sweep", "sweep_all"]
