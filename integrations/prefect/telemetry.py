"""Prefect's run-telemetry seam, taken over: one pipetrace span per flow run and per task-run attempt.

Prefect 3 engines call a ``RunTelemetry`` object at every step of a run (start, each state change,
exceptions, end) and make its ``span`` current while the run executes. :class:`PipetraceRunTelemetry` is
that object with pipetrace's span in place of Prefect's (derived ids, ``run {flow}`` / ``task {task}``
names, one span per task-run *attempt*), so Prefect's own behaviour builds on it: user spans nest under
it, states carry its traceparent, consumed futures are linked to it. Prefect's native span is never
started: one span per run whether native telemetry is on or off (on: the ``__OTEL_TRACEPARENT`` label is
written as Prefect would).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pipetrace
from opentelemetry.trace import Span
from pipetrace import attributes as A
from pipetrace.adapter import attempt_attributes, handoffs, record_error, warn_once_per
from pipetrace.adapter.runs import Run, TaskAttempts, current_span_context, finish
from pipetrace.adapter.steps import Steps, adrive, drive
from pipetrace.identity import RunIdentity
from prefect.client.schemas import TaskRun
from prefect.telemetry.run_telemetry import RunTelemetry

from . import hooks, links, runs

log = logging.getLogger("pipetrace.prefect")

def _ns(value: Any) -> int | None:
    try:
        return int(value.timestamp() * 1e9)
    except Exception:
        return None


def _warn(what: str, exc: BaseException) -> None:
    warn_once_per(log, f"prefect-{what}", "pipetrace: prefect %s failed (run continues): %r", what, exc)


@dataclass(eq=False)  # identity-hashed
class PipetraceRunTelemetry(RunTelemetry):
    """RunTelemetry whose span is pipetrace's (see module doc). Every override is guarded: on any
    pipetrace error it falls back to Prefect's own behaviour."""

    __hash__ = object.__hash__  # RunTelemetry is an eq-dataclass (unhashable)

    if TYPE_CHECKING:  # Prefect's own field, typed for mypy runs without Prefect installed
        span: Span | None = None

    engine: Any = None  # weakref to the engine that owns this object
    _pt_kind: str = ""  # "flow" or "task" once pipetrace's span started (else Prefect's own behaviour)
    _pt_run: Any = None
    _pt_flow: Run | None = None
    _pt_attempts: TaskAttempts | None = None  # a task run's attempts
    _pt_running_seen: bool = False
    _pt_final: Any = None
    _pt_client: Any = None  # the engine's sync client (reads back upstream runs this process did not see)
    _pt_later: list[links.Entry] = field(default_factory=list)  # inputs whose producers had not started

    # ---- start: one body, driven sync or async (:mod:`pipetrace.adapter.steps`) ------------------------
    def start_span(self, run: Any, client: Any, parameters: dict[str, Any] | None = None) -> Span | None:
        self._pt_client = client
        if drive(self._pt_starting(run, client, parameters)):
            return self.span
        return super().start_span(run, client, parameters)

    async def async_start_span(self, run: Any, client: Any, parameters: dict[str, Any] | None = None
                               ) -> Span | None:
        if await adrive(self._pt_starting(run, client, parameters)):
            return self.span
        return await super().async_start_span(run, client, parameters)

    def _pt_starting(self, run: Any, client: Any, parameters: dict[str, Any] | None) -> Steps[bool]:
        """Start pipetrace's span, yielding each client call; False: not started (Prefect's own follows)."""
        inputs = None
        if _is_subflow(run, client):  # its parameters: the task_inputs of the task run standing for it
            try:
                inputs = (yield lambda: client.read_task_run(run.parent_task_run_id)).task_inputs
            except Exception as exc:
                _warn("subflow inputs", exc)
        if self._pt_start(run, parameters, inputs) is None:
            return False
        if self._enabled and self._pt_kind == "flow":
            try:  # what Prefect's native telemetry does: the run's trace is readable from its labels
                yield lambda: client.update_flow_run_labels(run.id, {runs.LABEL: run.labels[runs.LABEL]})
            except Exception as exc:
                _warn("label update", exc)
        return True

    def _pt_start(self, run: Any, parameters: dict[str, Any] | None, inputs: Any) -> Span | None:
        try:
            engine = self.engine() if self.engine is not None else None
            task = isinstance(run, TaskRun)
            if task:
                span = self._pt_start_task(getattr(engine, "task", None), run, parameters)
            else:
                span = self._pt_start_flow(getattr(engine, "flow", None), run, parameters, inputs)
            if span is None or not span.get_span_context().is_valid:
                return None
            self.span, self._pt_kind, self._pt_run = span, "task" if task else "flow", run
            return span
        except Exception as exc:
            _warn("span start", exc)
            return None

    def _pt_start_flow(self, flow: Any, run: Any, parameters: dict[str, Any] | None, inputs: Any) -> Span | None:
        if flow is None:
            return None
        pipetrace.set_component("prefect-flow", override=False)  # a flow started from a worker keeps its name
        info = Run(runs.flow_identity(flow.name, run, current_span_context() or runs.label_context(run.labels)))
        attrs = runs.native_attributes(run, "flow", parameters)
        attrs.update({runs.FLOW_RUN_ID: str(run.id), runs.FLOW: flow.name, runs.FLOW_RUN_NAME: run.name})
        span = info.start_span(attrs, links.input_links(inputs, self._pt_client, info.ident.trace_id))
        links.producers.remember(str(run.id), span)
        self._pt_flow = runs.flows.add(info)
        if traceparent := handoffs.traceparent(span):
            run.labels[runs.LABEL] = traceparent  # in memory, as Prefect does: subflows, workers, deployments
        return span

    def _pt_start_task(self, task: Any, run: Any, parameters: dict[str, Any] | None) -> Span | None:
        from prefect.context import FlowRunContext

        if task is None:
            return None
        flow_ctx = FlowRunContext.get()
        info = runs.flow_info_for_context(flow_ctx) if flow_ctx is not None else None
        member, run_id = hooks.take_member(task.name, info), str(run.id)  # str(UUID): once, it is not free
        if info is None:  # a task called outside any flow: its own run
            info = Run(RunIdentity(runs.SYSTEM, task.name, run_id, current_span_context()))
        self._pt_flow, self._pt_run = info, run
        attrs = runs.native_attributes(run, "task", parameters)
        attrs.update(attempt_attributes(runs.SYSTEM, info.pipeline, info.run_id, task.name, task_run_id=run_id,
                                        map_index=member.map_index if member is not None else None))
        attrs[runs.TASK_RUN_ID] = run_id  # flow, flow run and task: the cicd.pipeline.* values, not repeated
        inputs = links.input_links(getattr(run, "task_inputs", None), trace_id=info.ident.trace_id,
                                   later=self._pt_later)
        self._pt_attempts = TaskAttempts(
            info, task.name, lambda n: runs.task_span_id(info.ident, task.name, run_id, n), attrs, inputs, member)
        for stale in runs.flows.opened(info.run_id, self):
            stale._pt_abandon()
        return self._pt_begin_attempt(max(1, int(run.run_count or 0) + 1))

    def _pt_begin_attempt(self, try_number: int, start_ns: int | None = None, *, current: bool = False) -> Span:
        assert self._pt_attempts is not None
        self._pt_running_seen = False
        span = self._pt_attempts.begin(try_number, start_ns, current=current)
        links.producers.remember(str(self._pt_run.id), span)
        return span

    # ---- state changes: Prefect's retry machine ------------------------------------------------------
    def update_state(self, new_state: Any) -> None:
        if self._pt_kind:
            try:
                self._pt_on_state(new_state)
            except Exception as exc:
                _warn("state change", exc)
        super().update_state(new_state)  # the state event, on the attempt's span

    def _pt_on_state(self, state: Any) -> None:
        kind, ts = str(getattr(state.type, "value", state.type)), _ns(state.timestamp)
        attempts = self._pt_attempts
        if attempts is not None and kind == "RUNNING":
            run_count = int(getattr(self._pt_run, "run_count", 0) or 0)
            if self.span is None or run_count > attempts.try_number:
                # a retry: the previous attempt (if still open) ends here, the next one begins, current
                self._pt_finish(result=A.RESULT_RETRY, end_ns=ts)
                self.span = self._pt_begin_attempt(max(run_count, attempts.try_number + 1), ts, current=True)
            if not self._pt_running_seen and self.span is not None:
                self._pt_running_seen = True
                if self._pt_flow is not None:  # the inputs whose producers had not started: finished by now
                    attempts.add_links(links.resolve(self._pt_later, self._pt_client, self._pt_flow.ident.trace_id))
                attempts.running(ts)
        elif attempts is not None and kind == "SCHEDULED":  # AwaitingRetry: this attempt is over
            self._pt_finish(result=A.RESULT_RETRY, end_ns=ts, state=state)
        elif attempts is not None and kind == "PENDING" and state.name == "NotReady" and self.span is not None:
            # upstream failed: the task never runs, and Prefect never ends its span
            self._pt_finish(result=A.RESULT_SKIP, end_ns=ts, state=state)
            self._pt_close()
        elif state.is_final():
            self._pt_final = state

    # ---- end -----------------------------------------------------------------------------------------
    def end_span_on_success(self) -> None:
        if not self._pt_kind:
            return super().end_span_on_success()
        self._pt_end(None)

    def end_span_on_failure(self, terminal_message: str | None = None) -> None:
        if not self._pt_kind:
            return super().end_span_on_failure(terminal_message)
        self._pt_end(terminal_message or "Run failed")

    def record_exception(self, exc: BaseException) -> None:
        if not self._pt_kind:
            return super().record_exception(exc)
        try:
            if self.span is not None:
                record_error(self.span, exc, status=False)  # the status follows the run's final state
        except Exception as err:
            _warn("exception record", err)

    def update_run_name(self, name: str) -> None:
        if not self._pt_kind:
            return super().update_run_name(name)
        try:  # span names stay low-cardinality: the generated run name is an attribute only
            if self.span is not None:
                self.span.set_attribute("prefect.run.name", name)
                if self._pt_kind == "flow":
                    self.span.set_attribute(runs.FLOW_RUN_NAME, name)
                elif self._pt_attempts is not None:  # the next attempts too
                    self._pt_attempts.attributes["prefect.run.name"] = name
        except Exception as exc:
            _warn("run name", exc)

    def _pt_end(self, failure_message: str | None) -> None:
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

    def _pt_abandon(self) -> None:
        """End the attempt still open when its flow run ended (or the registry was full), at its final
        state's time when known."""
        try:
            final = self._pt_final
            if final is not None:
                self._pt_finish(result=runs.result_of(final), end_ns=_ns(final.timestamp), state=final)
            else:
                self._pt_finish(result=A.RESULT_ERROR, end_ns=None, message="task run abandoned by its flow run")
        except Exception as exc:
            _warn("sweep", exc)

    def _pt_finish(self, *, result: str, end_ns: int | None, state: Any = None, message: str | None = None
                   ) -> None:
        """End the open span (a task attempt or the flow run) with ``result``."""
        attrs = {**runs.state_attrs(state), **({runs.CACHED: True} if state.name == "Cached" else {})} \
            if state is not None else {}
        message, error_type = message or getattr(state, "message", None), getattr(state, "name", None)
        span, self.span = self.span, None
        if self._pt_attempts is not None:
            self._pt_attempts.end(result, end_ns=end_ns, message=message, error_type=error_type, attributes=attrs)
        elif span is not None:
            finish(span, result, key=A.PIPELINE_RESULT, end_ns=end_ns, message=message, error_type=error_type,
                   attributes=attrs)

    def _pt_close(self) -> None:
        """The run is over: a flow run also closes what it left open and records its batches."""
        info = self._pt_flow
        if info is not None and self._pt_kind == "task":
            runs.flows.closed(info.run_id, self)
        elif info is not None:
            runs.flows.end(info.run_id, PipetraceRunTelemetry._pt_abandon)


def _is_subflow(run: Any, client: Any) -> bool:
    return getattr(run, "parent_task_run_id", None) is not None and client is not None \
        and type(run).__name__ == "FlowRun"


def sweep_all() -> None:
    """End the task attempts still open when the process exits."""
    runs.flows.abandon_all(PipetraceRunTelemetry._pt_abandon)


__all__ = ["PipetraceRunTelemetry", "sweep_all"]
