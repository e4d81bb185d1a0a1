"""Fan-out batches: one ``batch {task}`` span parenting the members of a map/group call.

The k-th fan-out of a task in a run gets a derived span id (``batch_span_id(task, k)``), known before any
member is submitted, so each member starts its span under it without waiting for the batch; the batch
span itself is recorded after the fact (from its start to its latest member's end) when the run ends.
Membership reaches a member through a context variable that thread pools copy at submit time; a member
sent to another process carries :meth:`Member.carrier` instead (see :meth:`Batches.member_from`).
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from opentelemetry.context import Context

from .. import attributes as A
from ..identity import RunIdentity
from ..spans import Time, record_span
from ..util.ratelimit import warn_once_per
from .attributes import run_attributes

log = logging.getLogger("pipetrace.adapter")

T = TypeVar("T")


@dataclass
class Batch:
    """One fan-out call: its derived span id, parent, start, size and the end of its latest member."""

    ident: RunIdentity
    task: str
    index: int
    parent: Context
    start_ns: int
    size: int = 0
    end_ns: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def span_id(self) -> int:
        return self.ident.batch_span_id(self.task, self.index)

    def context(self) -> Context:
        """The parent context of the batch's members."""
        return self.ident.context_for(self.span_id)

    def member_ended(self, end_ns: int) -> None:
        with self.lock:
            self.end_ns = max(self.end_ns, end_ns)

    def record(self, attributes: Mapping[str, Any] | None = None) -> bool:
        """Record the batch span (after the fact, from its members' times)."""
        end = max(self.end_ns or time.time_ns(), self.start_ns)
        attrs = {**run_attributes(self.ident.system, self.ident.pipeline, self.ident.run_id),
                 A.TASK_NAME: self.task, A.BATCH_SIZE: self.size, A.BATCH_INDEX: self.index, **(attributes or {})}
        return record_span(self.ident, self.span_id, A.batch_span_name(self.task), start=self.start_ns, end=end,
                           parent=self.parent, synthetic=False, attributes=attrs)


@dataclass(frozen=True)
class Member:
    batch: Batch
    map_index: int

    def carrier(self) -> str:
        """Membership as text for a member run in another process: ``{run id}|{k}|{map index}|{task}``."""
        return f"{self.batch.ident.run_id}|{self.batch.index}|{self.map_index}|{self.batch.task}"


class Batches:
    """The batches one run has opened in this process, numbered per task in call order."""

    def __init__(self, ident: RunIdentity) -> None:
        self.ident = ident
        self._calls: dict[str, int] = {}
        self._open: list[Batch] = []
        self._lock = threading.Lock()

    def open(self, task: str, parent: Context) -> Batch:
        """The next fan-out of ``task`` (parent: the context the fan-out was called in)."""
        with self._lock:
            k = self._calls.get(task, 0)
            self._calls[task] = k + 1
            batch = Batch(self.ident, task, k, parent, time.time_ns())
            self._open.append(batch)
        return batch

    def member_from(self, carried: str | None, task: str) -> Member | None:
        """The membership a :meth:`Member.carrier` names, if it is of this run and ``task`` (the batch
        span itself is recorded by the process that opened it: here only its id matters)."""
        if not carried:
            return None
        run_id, k, index, name = carried.split("|", 3)
        if run_id != self.ident.run_id or name != task:
            return None
        return Member(Batch(self.ident, task, int(k), Context(), 0), int(index))

    def record_all(self, extra: Callable[[Batch], Mapping[str, Any]] | None = None) -> None:
        """Record every batch opened so far (the run ended), with the adapter's ``extra(batch)`` attributes;
        a failure loses that batch span only."""
        with self._lock:
            batches, self._open = self._open, []
        for batch in batches:
            try:
                batch.record(extra(batch) if extra is not None else None)
            except Exception as exc:
                warn_once_per(log, "adapter-batch", "pipetrace: batch span not recorded: %r", exc)


class Finished(NamedTuple):
    """One member of a fan-out as its orchestrator recorded it (times as ``record_span`` takes them)."""

    task: str
    start: Time
    end: Time
    failed: bool


def record_finished(ident: RunIdentity, members: Iterable[Finished], *, run_end: Time = None,
                    parent: Context | None = None, parent_span_id: int | None = None,
                    extra: Callable[[str], Mapping[str, Any]] | None = None) -> None:
    """One ``batch {task}`` span per mapped task of an ended run, from the orchestrator's own record of its
    members (Airflow's mapped task instances, Dagster's dynamic step events): from the first member start
    (``run_end``, else the last member end, when none started) to the last member end, failed if any member
    failed, size = the members given; ``extra(task)``: the adapter's own attributes."""
    groups: dict[str, list[Finished]] = {}
    for member in members:
        groups.setdefault(member.task, []).append(member)
    for task, group in groups.items():
        starts = [m.start for m in group if m.start]
        ends = [m.end for m in group if m.end]
        last = max(ends) if ends else None
        first = min(starts) if starts else (run_end or last)
        attrs = {**run_attributes(ident.system, ident.pipeline, ident.run_id), A.TASK_NAME: task,
                 A.BATCH_SIZE: len(group), **(extra(task) if extra is not None else {})}
        record_span(ident, ident.batch_span_id(task), A.batch_span_name(task), start=first,
                    end=last if last is not None else first, parent=parent, parent_span_id=parent_span_id,
                    synthetic=False, attributes=attrs,
                    result=A.RESULT_FAILURE if any(m.failed for m in group) else A.RESULT_SUCCESS)


@dataclass
class _Cursor:
    batch: Batch
    counter: Iterator[int] = field(default_factory=itertools.count)


_cursor: contextvars.ContextVar[_Cursor | None] = contextvars.ContextVar("pipetrace_fanout", default=None)
_member: contextvars.ContextVar[Member | None] = contextvars.ContextVar("pipetrace_member", default=None)


@contextmanager
def _set_while(var: contextvars.ContextVar[T | None], value: T | None) -> Iterator[None]:
    """``var`` holds ``value`` for the block (None: left as it is)."""
    token = var.set(value) if value is not None else None
    try:
        yield
    finally:
        if token is not None:
            var.reset(token)


def mapping(batch: Batch | None) -> AbstractContextManager[None]:
    """While a fan-out call submits its members, each :func:`submitting` takes the next map index (no batch:
    a fan-out not traced, its members none)."""
    return _set_while(_cursor, _Cursor(batch) if batch is not None else None)


def next_member() -> Member | None:
    """The membership of the member about to be submitted (None outside :func:`mapping`)."""
    cursor = _cursor.get()
    if cursor is None:
        return None
    index = next(cursor.counter)
    cursor.batch.size = index + 1
    return Member(cursor.batch, index)


_UNCHANGED: AbstractContextManager[None] = nullcontext()
"""What :func:`submitting` returns for no member (a plain submit): no generator set up and torn down."""


def submitting(member: Member | None) -> AbstractContextManager[None]:
    """Submit one member: the context the runner copies for it carries its membership."""
    return _set_while(_member, member) if member is not None else _UNCHANGED


def take_member() -> Member | None:
    """The membership of the member starting in this context, then cleared (so what the member itself
    submits is not taken for members of the same batch)."""
    member = _member.get()
    if member is not None or _cursor.get() is not None:
        _member.set(None)
        _cursor.set(None)
    return member


__all__ = ["Batch", "Batches", "Finished", "Member", "mapping", "next_member", "record_finished", "submitting",
           "take_member"]
