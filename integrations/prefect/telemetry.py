"""Prefect's run-telemetry seam, taken over: one pipetrace span per flow run and per task-run attempt.

Prefect 3 engines call a ``RunTelemetry`` object at every step of a run (start, state changes, exceptions,
end) and make its ``span`` current while the run executes. :class:`PipetraceRunTelemetry` is that object with
pipetrace's span in place of Prefect's (derived ids, ``run {flow}`` / ``task {task}`` names, one span per
task-run *attempt*), so Prefect's own behaviour builds on it: user spans nest under it, states carry its
traceparent, consumed futures are linked to it. Prefect's native span is never started (its setting on: the
``__OTEL_TRACEPARENT`` label is written as Prefect would)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pipetrace
from opentelemetry.trace import Span
from pipetrace import attributes as A
from pipetrace.adapter import attempt_attributes, guarded, handoffs, record_error, warn_once_per
from pipetrace.adapter.runs import Run, TaskAttempts, current_span_context
from pipetrace.adapter.spans import to_ns
from pipetrace.adapter.steps import Steps, adrive, drive
from pipetrace.identity import RunIdentity
from prefect.client.schemas import TaskRun
from prefect.telemetry.run_telemetry import RunTelemetry

from . import hooks, links, runs

log = logging.getLogger("pipetrace.prefect")


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
    _pt_open: Run | TaskAttempts | None = None  # the flow run or task run pipetrace traces (None: Prefect does)
    _pt_run: Any = None
    _pt_final: Any = None
    _pt_client: Any = None  # the engine's sync client (reads back upstream runs this process did not see)
    _pt_later: Sequence[links.Entry] = ()  # inputs whose producers had not started

    # ---- start: one body, driven sync or async (:mod:`pipetrace.adapter.steps`); a sync task run's directly
    def start_span(self, run: Any, client: Any, parameters: dict[str, Any] | None = None) -> Span | None:
        self._pt_client = client
        started = (self._pt_begin(run, True, run.task_inputs, parameters) if isinstance(run, TaskRun)  # (no client
                   else drive(self._pt_starting(run, client, parameters)))  # call first: no steps driven)
        return self.span if started else super().start_span(run, client, parameters)

    async def async_start_span(self, run: Any, client: Any, parameters: dict[str, Any] | None = None) -> Span | None:
        if await adrive(self._pt_starting(run, client, parameters)):
            return self.span
        return await super().async_start_span(run, client, parameters)

    def _pt_starting(self, run: Any, client: Any, parameters: dict[str, Any] | None) -> Steps[bool]:
        """Start pipetrace's span (the flow run's, or the task run's first attempt), yielding each client
        call; False: not started (Prefect's own follows)."""
        task, inputs = isinstance(run, TaskRun), getattr(run, "task_inputs", None)
        if not task and client is not None and getattr(run, "parent_task_run_id", None):
            try:  # a subflow: its parameters are the task_inputs of the task run standing for it
                inputs = (yield lambda: client.read_task_run(run.parent_task_run_id)).task_inputs
            except Exception as exc:
                _warn("subflow inputs", exc)
        if not self._pt_begin(run, task, inputs, parameters):
            return False
        if self._enabled and not task:
            try:  # what Prefect's native telemetry does: a flow run's trace is readable from its labels
                yield lambda: client.update_flow_run_labels(run.id, {runs.LABEL: run.labels[runs.LABEL]})
            except Exception as exc:
                _warn("label update", exc)
        return True

    def _pt_begin(self, run: Any, task: bool, inputs: Any, parameters: dict[str, Any] | None) -> bool:
        """Start the flow run's span or the task run's first attempt; False: not started (Prefect's own follows)."""
        try:
            named = getattr(self.engine(), "task" if task else "flow")  # the engine's Task or Flow
            run_id = str(run.id)  # str(UUID): once, it is not free
            kind, start = ("task", self._pt_start_task) if task else ("flow", self._pt_start_flow)
            self._pt_run, attrs = run, runs.native_attributes(run, run_id, kind, parameters)  # (and whether plain)
            opened: Run | TaskAttempts = start(named.name, run, run_id, inputs, *attrs)
            if opened.span is None or not opened.span.get_span_context().is_valid:
                return False
            self.span, self._pt_open = opened.span, opened
            return True
        except Exception as exc:
            _warn("span start", exc)
            return False

    def _pt_start_flow(self, flow: str, run: Any, run_id: str, inputs: Any, attrs: dict[str, Any], _: bool) -> Run:
        pipetrace.set_component("prefect-flow", override=False)  # a flow started from a worker keeps its name
        info = Run(runs.flow_identity(flow, run, current_span_context() or runs.label_context(run.labels)))
        span = info.start_span(attrs, links.input_links(links.entries(inputs), self._pt_client, info.ident.trace_id))
        links.producers.remember(run_id, span)
        if traceparent := handoffs.traceparent(span):
            run.labels[runs.LABEL] = traceparent  # in memory, as Prefect does: subflows, workers, deployments
        return runs.flows.add(info)

    def _pt_start_task(self, task: str, run: Any, run_id: str, inputs: Any, attrs: dict[str, Any],
                       plain: bool) -> TaskAttempts:
        info = runs.flow_info_for_context()
        member = hooks.take_member(task, info)
        if info is None:  # a task called outside any flow: its own run
            info = Run(RunIdentity(runs.SYSTEM, task, run_id, current_span_context()))
        attrs.update(attempt_attributes(runs.SYSTEM, info.pipeline, info.run_id, task, task_run_id=run_id,
                                        map_index=member.map_index if member is not None else None))
        self._pt_later = later = []  # type: list[links.Entry]
        linked = (links.input_links(links.entries(inputs), trace_id=info.ident.trace_id, later=later)
                  if inputs and any(inputs.values()) else [])  # (most tasks: none, or values only)
        attempts = TaskAttempts(info, task, lambda n: runs.task_span_id(info.ident, task, run_id, n), attrs, linked,
                                member, on_begin=lambda span: links.producers.remember(run_id, span), plain=plain)
        runs.flows.opened(info.run_id, self, PipetraceRunTelemetry._pt_abandon)  # (evicted: abandoned)
        attempts.begin(max(1, int(run.run_count or 0) + 1))
        return attempts

    # ---- state changes: Prefect's retry machine ------------------------------------------------------
    def update_state(self, new_state: Any) -> None:
        attempts = self._pt_open if isinstance(self._pt_open, TaskAttempts) else None
        try:
            kind = str(getattr(new_state.type, "_value_", new_state.type))  # (runs.kind_of, inline: twice a task)
            if attempts is not None and kind == "RUNNING":
                first = attempts.on_running(int(getattr(self._pt_run, "run_count", 0) or 0), to_ns(new_state.timestamp))
                self.span = attempts.span  # a retry: the next try's
                if first and self._pt_later:  # the inputs whose producers had not started: finished by now
                    later, self._pt_later = self._pt_later, []
                    attempts.add_links(links.input_links(later, self._pt_client, attempts.run.ident.trace_id))
            elif attempts is not None and kind == "SCHEDULED":  # AwaitingRetry: this attempt is over
                self._pt_event(new_state, kind)  # its event on the attempt it ends
                self._pt_finish(A.RESULT_RETRY, to_ns(new_state.timestamp), new_state)
                return
            elif attempts is not None and kind == "PENDING" and new_state.name == "NotReady" and attempts.span:
                self._pt_event(new_state, kind)  # upstream failed: the task never runs (Prefect never ends it)
                self._pt_finish(A.RESULT_SKIP, to_ns(new_state.timestamp), new_state)
                self._pt_close()
                return
            elif new_state.is_final():
                self._pt_final = new_state
            if self._pt_open is not None:
                return self._pt_event(new_state, kind)  # the state event, on the attempt's span
        except Exception as exc:
            _warn("state change", exc)
        super().update_state(new_state)

    def _pt_event(self, state: Any, kind: str) -> None:
        """Prefect's state event, its type the plain value exported (no enum: a deferred span keeps it)."""
        if self.span is not None:
            name = state.name or kind
            self.span.add_event(name, {"prefect.state.message": state.message or "", "prefect.state.type": kind,
                                       "prefect.state.name": name, "prefect.state.id": str(state.id)})

    # ---- end -----------------------------------------------------------------------------------------
    def end_span_on_success(self) -> None:
        if self._pt_open is None:
            return super().end_span_on_success()
        self._pt_end(None)

    def end_span_on_failure(self, terminal_message: str | None = None) -> None:
        if self._pt_open is None:
            return super().end_span_on_failure(terminal_message)
        self._pt_end(terminal_message or "Run failed")

    @guarded(log, "prefect-exception-record", "prefect exception record failed (run continues)")
    def record_exception(self, exc: BaseException) -> None:
        if self._pt_open is None:
            return super().record_exception(exc)
        if self.span is not None:
            record_error(self.span, exc, status=False)  # the status follows the run's final state

    @guarded(log, "prefect-run-name", "prefect run name failed (run continues)")
    def update_run_name(self, name: str) -> None:
        if self._pt_open is None:
            return super().update_run_name(name)
        if self.span is not None:  # span names stay low-cardinality: the generated run name is an attribute only
            self.span.set_attribute("prefect.run.name", name)
            if isinstance(self._pt_open, TaskAttempts):  # the next attempts too
                self._pt_open.attributes["prefect.run.name"] = name
                self._pt_open.plain = self._pt_open.plain and type(name) is str

    @guarded(log, "prefect-span-end", "prefect span end failed (run continues)")
    def _pt_end(self, failure: str | None, *, abandoned: bool = False) -> None:
        """End the open span with its final state's result, else the engine's verdict (``failure``: its
        message), and close the run. ``abandoned``: an attempt left open when its flow run ended (or the
        registry was full) ends at its final state's time, else as an error; its flow run closes it."""
        if self.span is None:
            return
        if (final := self._pt_final) is not None:
            self._pt_finish(runs.result_of(final), to_ns(final.timestamp) if abandoned else None, final, failure)
        elif abandoned:
            self._pt_finish(A.RESULT_ERROR, message="task run abandoned by its flow run")
        else:
            self._pt_finish(A.RESULT_FAILURE if failure is not None else A.RESULT_SUCCESS, message=failure)
        if not abandoned:
            self._pt_close()

    def _pt_abandon(self) -> None:  # (a plain method: a partialmethod read from the class is rebuilt per read)
        self._pt_end(None, abandoned=True)

    def _pt_finish(self, result: str, end_ns: int | None = None, state: Any = None, message: str | None = None) -> None:
        """End the open span (a task attempt or the flow run) with ``result`` and ``state``'s attributes."""
        self.span = None  # (first: a failure below leaves no stale span to Prefect)
        attrs = runs.state_attrs(state) if state is not None else None
        if self._pt_open is not None:
            self._pt_open.end(result, end_ns=end_ns, message=message or getattr(state, "message", None),
                              error_type=getattr(state, "name", None), attributes=attrs)

    def _pt_close(self) -> None:
        """The run is over: a flow run also closes what it left open and records its batches."""
        if isinstance(self._pt_open, TaskAttempts):
            runs.flows.closed(self._pt_open.run.run_id, self)
        elif isinstance(self._pt_open, Run):
            runs.flows.end(self._pt_open.run_id, PipetraceRunTelemetry._pt_abandon)


def sweep_all() -> None:
    """End the task attempts still open when the process exits."""
    runs.flows.abandon_all(PipetraceRunTelemetry._pt_abandon)


__all__ = ["PipetraceRunTelemetry", "sweep_all"]
