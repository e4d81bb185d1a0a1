"""Workflows of a task queue: a run carried in the messages themselves, and attempt spans any process
can name.

Why in core: a task queue has no run record. A workflow (a message and everything its tasks publish)
is one run whose id and pipeline travel in the messages' headers, and each attempt's span id is derived
from its message id and try number. So a process that only sees ids can name an attempt's span: a
chord body links to its header tasks, a worker's main process records the attempt its dead child ran,
and a message that never ran (revoked, rejected) gets the span its run would have had — without shared
state, and one span in the store if the attempt also reported itself. The adapter keeps the header
names and which of its signals mean what.
"""

from __future__ import annotations

import contextvars
import importlib
import time
from collections.abc import Callable, Mapping, MutableMapping
from functools import partial
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, TraceFlags

from .. import attributes as A
from ..carriers import extract
from ..identity import RunIdentity, derive_task_span_id
from ..machinery.current import attach_span, span_context_in
from ..spans import record_span
from ..util.spancontext import IS_TUPLE
from . import headers as hdr
from .attempts import Attempt, deactivate
from .attributes import attempt_attributes
from .messaging import PUBLISHED_HEADER, ProducerRuns, consumer_span, link_limit, queued_ms
from .spans import DeferredSpan

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


class Workflows:
    """The workflow rules of one task-queue ``system``: which headers name a run (``run_header``, else
    the message's root id) and its pipeline (``pipeline_header``, else the first task's name), which one
    lists the message ids whose attempts a message's attempt links to (``links_header``: a chord body's
    header tasks), how an attempt's span id is derived, and the workflow attempt running in this context
    (:attr:`current`).

    ``plain``: types (``module:Name``, imported when first needed) whose instances' attributes are the
    message itself (read without a failed lookup);
    ``task_name(task, request)``: the name of a running attempt's task."""

    def __init__(self, system: str, *, pipeline_header: str, run_header: str, links_header: str,
                 plain: tuple[str, ...] = (),
                 task_name: Callable[[Any, Any], str] = lambda task, request: str(task)) -> None:
        self.system = system
        self.task_name = task_name
        self.pipeline_header = pipeline_header
        self.run_header = run_header
        self.links_header = links_header
        self.keys = (*hdr.TRACE_KEYS, PUBLISHED_HEADER, pipeline_header, run_header, links_header)
        self._wanted = frozenset(self.keys)  # (read per task: no lookup of the tuple's set)
        self._plain = plain
        self._plain_types: tuple[type, ...] | None = None
        self.current: contextvars.ContextVar[Running | None] = contextvars.ContextVar(
            f"pipetrace_{system}_workflow", default=None)
        self.producer_runs = ProducerRuns(bound=4096)

    def read(self, source: Any) -> dict[str, Any]:
        """Our header values from a message's headers or an object holding them (:func:`headers.read`)."""
        plain = self._plain_types
        if plain is None:
            plain = self._plain_types = tuple(getattr(importlib.import_module(m), n)
                                              for m, n in (p.split(":") for p in self._plain))
        return hdr.read(source, self._wanted, plain)

    def pipeline(self, values: Mapping[str, Any], default: str) -> str:
        """The workflow's pipeline from the headers, or ``default`` when absent or unusable (any producer
        can write it, and it becomes a span attribute and the store's pipeline column)."""
        return hdr.checked(values.get(self.pipeline_header), default)

    def run_id(self, values: Mapping[str, Any], default: str) -> str:
        """The workflow's run id from the headers, or ``default`` (the root id); same rules."""
        return hdr.checked(values.get(self.run_header), default)

    def attempt_span_id(self, message_id: str, try_number: int) -> int:
        return derive_task_span_id(self.system, self.system, str(message_id), "attempt", None, int(try_number))

    def run_identity(self, run_id: str) -> RunIdentity:
        """Identity of a workflow whose producer sent no trace context (derived trace id)."""
        return RunIdentity(self.system, self.system, str(run_id))

    def lost_span_id(self, message_id: str, pid: object, started_s: float | None, try_number: int) -> int:
        """A span id of its own for an attempt lost with its process (``pid``, started at ``started_s``)
        whose message is delivered again: the redelivery runs the same attempt, under the derived id."""
        return derive_task_span_id(self.system, self.system, str(message_id), f"lost-{pid}",
                                   int((started_s or 0) * 1e6) % 10**12, int(try_number))

    def attempt_links(self, message_ids: object, joined: SpanContext | None, kind: str = "result") -> list[Link]:
        """Links to the first attempt of each message in ``message_ids`` (a comma list), in the trace of
        ``joined`` (the context the linking span joins; None: no links), at most the provider's limit."""
        if not message_ids or joined is None:
            return []
        ids = [i for i in str(message_ids).split(",") if i][: link_limit()]
        return [Link(SpanContext(joined.trace_id, self.attempt_span_id(i, 1), is_remote=True, trace_flags=_SAMPLED),
                     {A.LINK_KIND: kind, A.MESSAGING_MESSAGE_ID: i}) for i in ids]

    def attempt_span(self, name: str, message_id: str, try_number: int, root_id: str, values: Mapping[str, Any],
                     attrs: dict[str, Any], *, now_ns: int, eta: object = None, map_index: object = None,
                     caller: Context | None = None) -> DeferredSpan:
        """The CONSUMER span of an attempt a message started, at ``now_ns``, under its derived span id: a
        child of the publish span in its headers (``values``), else of ``caller``'s span (an eager run),
        else a root of its run's derived trace. ``attrs`` (a new dict: the messaging attributes every
        attempt of the task on its queue shares, and the adapter's own) gets the workflow's and the
        attempt's attributes, and its queue wait (from publish, or from ``eta`` when later)."""
        # (self.run_id/pipeline inline, and a header that is absent not checked: per task)
        run, pipeline = values.get(self.run_header), values.get(self.pipeline_header)
        run = root_id if run is None else hdr.checked(run, root_id)
        attrs[A.PIPELINE_NAME] = name if pipeline is None else hdr.checked(pipeline, name)  # the message id is
        # the task run id: no messaging.message.id
        attrs[A.PIPELINE_RUN_ID] = run
        attrs[A.TASK_RUN_ID] = message_id
        attrs[A.TRY_NUMBER] = try_number
        if isinstance(map_index, int):
            attrs[A.MAP_INDEX] = map_index
        wait = queued_ms(values, now_ns, eta)
        if wait is not None:
            attrs[A.QUEUED_MS] = wait
        linked = values.get(self.links_header)
        return consumer_span(f"task {name}", values, attrs, source=f"{self.system} task {name}", caller=caller,
                             links=partial(self.attempt_links, linked) if linked else None, start_time=now_ns,
                             root_trace_id=lambda: self.run_identity(run).trace_id,
                             span_id=derive_task_span_id(self.system, self.system, message_id, "attempt", None,
                                                         try_number),  # (self.attempt_span_id, inline)
                             plain_attributes=True)

    def record_attempt(self, name: str, message_id: str, values: Mapping[str, Any], try_number: int, root_id: Any,
                       result: str, attrs: Mapping[str, Any], *, messaging: Mapping[str, Any] | None = None,
                       start: int | None = None, span_id: int | None = None, error: BaseException | str | None = None,
                       unrun: bool = False) -> None:
        """An attempt span recorded after the fact, under the attempt's derived span id (unless ``span_id``):
        an attempt whose process died (``start``: when it began) or, ``unrun``, one that never ran
        (revoked, rejected: its message id and queue wait are recorded too). ``values``: its headers."""
        run = self.run_id(values, str(root_id or message_id))
        now = time.time_ns()
        start = now if start is None else start
        base = dict(messaging or {})
        base.update(attempt_attributes(self.system, self.pipeline(values, name), run, name, try_number,
                                       task_run_id=message_id))
        if unrun:
            base[A.MESSAGING_MESSAGE_ID] = message_id
            wait = queued_ms(values)
            if wait is not None:
                base[A.QUEUED_MS] = wait
        base.update(attrs)
        record_span(self.run_identity(run), span_id or self.attempt_span_id(message_id, try_number), f"task {name}",
                    start=start, end=max(now, start), parent=extract(values, source=f"{self.system} task {name}"),
                    attributes=base, result=result, kind=SpanKind.CONSUMER, synthetic=True, error=error)

    def run_of_publish(self, headers: Mapping[str, Any], name: str, message_id: str, root_id: str,
                       context: Context) -> tuple[str, str]:
        """(pipeline, run id) of a message being published: the running attempt's run when a task of a
        workflow publishes it (whatever its root id); else the run of the producer's current trace (a
        traced block, a group or chord being published) if it has one; else a run of its own, named
        after the message (its root id and task ``name``) unless its headers name one."""
        running = self.current.get()
        if running is not None:
            return running.pipeline, running.run_id
        pipeline = self.pipeline(self.read(headers), name) if root_id != message_id else name
        sc = span_context_in(context)
        if not (sc[5] if IS_TUPLE else sc.is_valid):  # (no property call: once per publish)
            return pipeline, self.run_id(self.read(headers), root_id) if self.run_header in headers else root_id
        run_id, pipeline = self.producer_runs.claim(sc.trace_id, root_id, pipeline)
        return pipeline, run_id

    def stamp(self, headers: MutableMapping[str, Any], span: Span, now_ns: int, context: Context, *, name: str,
              root_id: str, pipeline: str, run_id: str) -> None:
        """Write the send ``span``'s context, the publish time and the workflow into a message's headers:
        the pipeline unless it is the task's own ``name``, the run id unless it is the ``root_id`` (what a
        worker assumes without them), or when the message already names one (a retried or re-sent
        message keeps its headers: a stale value there must be overwritten)."""
        carrier = hdr.stamp({}, span.get_span_context(), now_ns, context)
        if pipeline != name or hdr.has(headers, self.pipeline_header):
            carrier[self.pipeline_header] = pipeline
        if run_id != root_id or self.run_header in headers:
            carrier[self.run_header] = run_id
        hdr.write(headers, carrier)


class Running(Attempt):
    """An open attempt of a workflow, current as it is made (its span, and itself as its workflows'
    :attr:`~Workflows.current`) until :meth:`close`. Its pipeline and run id are read from its message
    (``request``) only when a publish or a batch asks for them (most tasks never do). Its task's name is
    the pipeline when the message names none (a workflow's first task)."""

    __slots__ = ("workflows", "task", "request", "root_id", "_pipeline", "_run_id", "failed", "var_token")

    _pipeline: str | None
    _run_id: str | None

    def __init__(self, span: Span, workflows: Workflows, task: Any, request: Any, root_id: str) -> None:
        self.span = span
        self.token = attach_span(span)
        self.try_number, self.data = 1, None
        self.workflows = workflows
        self.task, self.request, self.root_id = task, request, root_id
        self._pipeline = self._run_id = None
        self.failed = False
        self.var_token = workflows.current.set(self)

    def close(self) -> None:
        """Restore the context from before the attempt (:func:`deactivate`'s rule), its workflow too."""
        current = self.workflows.current
        if deactivate(self.token):
            try:
                current.reset(self.var_token)
                return
            except (ValueError, RuntimeError):
                pass
        current.set(None)  # another context (its own attempt's end restores it): nothing current here

    @property
    def pipeline(self) -> str:
        if self._pipeline is None:
            flows = self.workflows
            self._pipeline = flows.pipeline(flows.read(self.request), flows.task_name(self.task, self.request))
        return self._pipeline

    @property
    def run_id(self) -> str:
        if self._run_id is None:
            self._run_id = self.workflows.run_id(self.workflows.read(self.request), self.root_id)
        return self._run_id


__all__ = ["Running", "Workflows"]
