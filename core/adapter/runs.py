"""Runs this process executes (an orchestrator that runs a whole pipeline run in-process: Prefect flows,
Airflow's ``dag.test()``): each run's identity and fan-out batches, kept by run id so that the tasks it
starts find their parent without asking the orchestrator again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, SpanKind

from .. import attributes as A
from ..identity import RunIdentity
from .attempts import OpenAttempts
from .attributes import clean, run_attributes
from .batches import Batches, Member
from .runtime import get_tracer
from .spans import span_with_ids


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
    """A run executing in this process: its identity and the batches its fan-outs open."""

    ident: RunIdentity
    batches: Batches = field(init=False)

    def __post_init__(self) -> None:
        self.batches = Batches(self.ident)

    @property
    def pipeline(self) -> str:
        return self.ident.pipeline

    @property
    def run_id(self) -> str:
        return self.ident.run_id

    def start_span(self, attributes: Mapping[str, Any], links: Sequence[Link] = ()) -> Span:
        """The run span, live (the run executes in this process), with the run's derived ids: child of the
        upstream caller when there is one, else the root of the run's trace. Not made current here."""
        parent = self.ident.upstream_context()
        attrs = clean({**attributes, **run_attributes(self.ident.system, self.pipeline, self.run_id)})
        return span_with_ids(get_tracer(), A.run_span_name(self.pipeline), context=parent or Context(),
                             kind=SpanKind.SERVER, attributes=attrs, links=links,
                             trace_id=None if parent is not None else self.ident.trace_id,
                             span_id=self.ident.run_span_id)

    def task_parent(self, member: Member | None = None) -> Context:
        """Parent of a task attempt of this run: its batch span when it is a fan-out member, else the
        current span when that is in this run's trace (a task called inside a task), else the run span."""
        if member is not None:
            return member.batch.context()
        current = current_span_context()
        if current is not None and current.trace_id == self.ident.trace_id:
            return otel_context.get_current()
        return self.ident.run_context()


class Runs:
    """The runs executing in this process, by run id (bounded: a run that never ends is forgotten)."""

    def __init__(self) -> None:
        self._runs: OpenAttempts[str, Run] = OpenAttempts()

    def add(self, run: Run) -> Run:
        self._runs.put(run.run_id, run)
        return run

    def get(self, run_id: str) -> Run | None:
        return self._runs.get(run_id)

    def pop(self, run_id: str) -> Run | None:
        return self._runs.pop(run_id)


__all__ = ["Run", "Runs", "current_span_context", "run_identity"]
