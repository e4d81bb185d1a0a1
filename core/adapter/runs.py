"""Runs this process executes (an orchestrator that runs a whole pipeline run in-process: Prefect flows,
Airflow's ``dag.test()``): each run's identity and fan-out batches, kept by run id so that the tasks it
starts find their parent without asking the orchestrator again; the live spans of its task runs'
attempts; and the attempts still open when the run ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode

from .. import attributes as A
from ..identity import RunIdentity
from .attempts import MAX_OPEN, OpenAttempts, activate, deactivate
from .attributes import clean, run_attributes
from .batches import Batch, Batches, Member
from .errors import mark_outcome
from .runtime import get_tracer
from .spans import deferred_span, span_with_ids


def current_span_context() -> SpanContext | None:
    """The current span's context, if valid."""
    sc = trace.get_current_span().get_span_context()
    return sc if sc.is_valid else None


def run_identity(system: str, pipeline: str, run_id: str, upstream: SpanContext | None) -> RunIdentity:
    """Identity of a run whose caller is ``upstream``; an upstream that is the run's own run span (read
    back from metadata an earlier execution of the run wrote) is ignored: a span is never its own parent."""
    ident = RunIdentity(system, pipeline, run_id, None)
    if upstream is None or upstream.span_id == ident.run_span_id:
        return ident
    return RunIdentity(system, pipeline, run_id, upstream)


@dataclass
class Run:
    """A run executing in this process: its identity, the batches its fan-outs open and its live span."""

    ident: RunIdentity
    batches: Batches = field(init=False)
    span: Span | None = field(default=None, init=False, repr=False)
    pipeline: str = field(init=False, repr=False)  # the identity's, copied: read for every task the run starts
    run_id: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.batches = Batches(self.ident)
        self.pipeline, self.run_id = self.ident.pipeline, self.ident.run_id

    def start_span(self, attributes: Mapping[str, Any], links: Sequence[Link] = ()) -> Span:
        """The run span, live (the run executes in this process), with the run's derived ids: child of the
        upstream caller when there is one, else the root of the run's trace. Not made current here."""
        parent = self.ident.upstream_context()
        attrs = clean({**attributes, **run_attributes(self.ident.system, self.pipeline, self.run_id)})
        self.span = span_with_ids(get_tracer(), A.run_span_name(self.pipeline), context=parent or Context(),
                                  kind=SpanKind.SERVER, attributes=attrs, links=links,
                                  trace_id=None if parent is not None else self.ident.trace_id,
                                  span_id=self.ident.run_span_id)
        return self.span

    def end(self, result: str, *, end_ns: int | None = None, message: str | None = None,
            error_type: str | None = None, attributes: Mapping[str, Any] | None = None) -> None:
        """End the run span :meth:`start_span` started with ``result`` (as :meth:`TaskAttempts.end` ends an
        attempt: one call for either); no-op if none is open."""
        span, self.span = self.span, None
        if span is not None:
            finish(span, result, key=A.PIPELINE_RESULT, end_ns=end_ns, message=message, error_type=error_type,
                   attributes=attributes)

    def task_parent(self, member: Member | None = None) -> Context:
        """Parent of a task attempt of this run: its batch span when it is a fan-out member, else the
        current span when that is in this run's trace (a task called inside a task), else the run span."""
        if member is not None:
            return member.batch.context()
        context = otel_context.get_current()  # (read once: the current span is looked up in it)
        current = trace.get_current_span(context).get_span_context()
        if current.is_valid and current.trace_id == self.ident.trace_id:
            return context
        return self.ident.run_context()


_OK = Status(StatusCode.OK)
"""A success's status (a ``Status`` is immutable: one for every span)."""


def finish(span: Span, result: str, *, key: str = A.TASK_RESULT, end_ns: int | None = None,
           message: str | None = None, error_type: str | None = None,
           attributes: Mapping[str, Any] | None = None) -> None:
    """End a live span of a run or attempt with ``attributes`` and ``result`` (see :func:`~.errors.mark_outcome`;
    a success, most ends, is what it does for one: the attributes and result in one call, status OK)."""
    if result == A.RESULT_SUCCESS:
        if attributes:
            span.set_attributes({**attributes, key: result})
        else:
            span.set_attribute(key, result)
        span.set_status(_OK)
    else:
        mark_outcome(span, result, key=key, message=message, error_type=error_type, attributes=attributes)
    span.end(end_time=end_ns or time.time_ns())


class TaskAttempts:
    """The attempts of one task run of a run executing in this process, one live span each: begun with
    the derived span id of its try under the run (or its batch), given its queue wait and late links, and
    ended with a result; the batch it belongs to learns its end. ``on_begin(span)``: each try's span as it
    begins (a producer remembered for its consumers). ``plain``: the caller hands ``attributes`` over as
    the SDK would store them (a dict of non-empty str keys and str/bool/int/float values, or tuples of one of
    those types), so they are neither cleaned here nor checked again at each attempt's end."""

    def __init__(self, run: Run, task: str, span_id: Callable[[int], int], attributes: Mapping[str, Any],
                 links: list[Link], member: Member | None = None,
                 on_begin: Callable[[Span], object] | None = None, *, plain: bool = False) -> None:
        self.run, self.task, self.span_id, self.member, self.links = run, task, span_id, member, links
        self.plain = plain and type(attributes) is dict
        self.attributes: dict[str, Any] = attributes if self.plain else clean(attributes)  # type: ignore[assignment]
        self.parent = run.task_parent(member)
        self.name = A.task_span_name(task)
        self.on_begin = on_begin
        self.span: Span | None = None
        self.try_number = 0
        self.ran = False
        self._token: object = None

    def begin(self, try_number: int, start_ns: int | None = None, *, current: bool = False) -> Span:
        """Start the span of try ``try_number`` (made current if ``current``: the orchestrator does not),
        recorded when it ends (the deferred strategy: an SDK span only if something needs one, such as an
        exception, a late link or a processor that watches running spans), on the task's thread."""
        self.try_number, self.ran = try_number, False
        self.span = deferred_span(get_tracer(), self.name, context=self.parent,
                                  attributes={**self.attributes, A.TRY_NUMBER: try_number}, start_time=start_ns,
                                  links=tuple(self.links), span_id=self.span_id(try_number),
                                  plain_attributes=self.plain)
        self._token = activate(self.span) if current else None
        if self.on_begin is not None:
            self.on_begin(self.span)
        return self.span

    def running(self, ts_ns: int | None) -> bool:
        """The open attempt started running at ``ts_ns``: its time since the span began is its queue wait.
        True the first time for this try only (an orchestrator may report it running more than once)."""
        if self.span is None or self.ran:
            return False
        self.ran = True
        start = getattr(self.span, "start_time", None)
        if start and ts_ns and ts_ns >= start:
            self.span.set_attribute(A.QUEUED_MS, round((ts_ns - start) / 1e6, 3))
        return True

    def on_running(self, run_count: int, ts_ns: int | None) -> bool:
        """The orchestrator reports the task run running at ``ts_ns`` for the ``run_count``-th time: a run
        beyond the open try (or with none open) is a retry, so the open try ends as ``retry`` and the next
        begins there, current. Then as :meth:`running`: True the first time for a try."""
        if self.span is None or run_count > self.try_number:
            self.end(A.RESULT_RETRY, end_ns=ts_ns)
            self.begin(max(run_count, self.try_number + 1), ts_ns, current=True)
        return self.running(ts_ns)

    def add_links(self, links: list[Link]) -> None:
        """Links learnt after the attempt began (the next tries get them too)."""
        for lk in links:
            if self.span is not None:
                self.span.add_link(lk.context, lk.attributes)
            self.links.append(lk)

    def end(self, result: str, *, end_ns: int | None = None, message: str | None = None,
            error_type: str | None = None, attributes: Mapping[str, Any] | None = None) -> None:
        """End the open attempt with ``result`` (see :func:`~.errors.mark_outcome`); no-op if none is open."""
        span, self.span = self.span, None
        if span is None:
            return
        token, self._token = self._token, None
        if token is not None and trace.get_current_span() is span:
            deactivate(token)
        end = end_ns or time.time_ns()
        finish(span, result, end_ns=end, message=message, error_type=error_type, attributes=attributes)
        if self.member is not None:
            self.member.batch.member_ended(end)


class Runs:
    """The runs executing in this process, by run id, and their open attempts (bounded: a run that never
    ends is forgotten)."""

    def __init__(self, bound: int = MAX_OPEN) -> None:
        self._runs: OpenAttempts[str, Run] = OpenAttempts(bound)
        self._attempts: OpenAttempts[tuple[str, int], Any] = OpenAttempts(bound)

    def add(self, run: Run) -> Run:
        self._runs.put(run.run_id, run)
        return run

    def get(self, run_id: str) -> Run | None:
        return self._runs.get(run_id)

    def pop(self, run_id: str) -> Run | None:
        return self._runs.pop(run_id)

    def opened(self, run_id: str, attempt: Any, abandon: Callable[[Any], object] | None = None) -> list[Any]:
        """Keep ``attempt`` (any object) open under its run until :meth:`closed`; returns the attempts
        evicted to make room, each ended with ``abandon`` when given (else the caller ends them)."""
        evicted = self._attempts.put((run_id, id(attempt)), attempt)
        if abandon is not None:
            for old in evicted:
                abandon(old)
        return evicted

    def closed(self, run_id: str, attempt: Any) -> None:
        self._attempts.pop((run_id, id(attempt)))

    def end(self, run_id: str, abandon: Callable[[Any], object],
            extra: Callable[[Batch], Mapping[str, Any]] | None = None) -> None:
        """The run ended here: ``abandon`` each attempt it left open, then record its batches (their
        members' ends known by then) and forget it."""
        for attempt in self._attempts.pop_where(lambda key: key[0] == run_id):
            abandon(attempt)
        run = self._runs.pop(run_id)
        if run is not None:
            run.batches.record_all(extra)

    def abandon_all(self, abandon: Callable[[Any], object]) -> None:
        """End every open attempt (the process exits)."""
        for attempt in self._attempts.clear():
            abandon(attempt)


__all__ = ["Run", "Runs", "TaskAttempts", "current_span_context", "finish", "run_identity"]
