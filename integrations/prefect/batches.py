"""``.map()`` as one ``batch {task}`` span parenting the mapped task runs.

The batch span id is derived (``batch_span_id(task, k)`` for the k-th ``.map()`` of that task in the
flow run) and known before any task is submitted, so each mapped task run can start its span under
it; the batch span itself is emitted after the fact when the flow run ends, spanning its members.
Membership reaches the task thread through a context variable that Prefect's thread-pool runner copies
at submit time.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pipetrace
from opentelemetry.context import Context
from pipetrace import attributes as A
from pipetrace.util.ratelimit import warn_once_per

from .runs import FlowInfo

log = logging.getLogger("pipetrace.prefect")


@dataclass
class Batch:
    """One ``.map()`` call: its derived span id, parent, start and the end of its latest member."""

    flow: FlowInfo
    task: str
    index: int
    span_id: int
    parent: Context
    start_ns: int
    size: int = 0
    end_ns: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def context(self) -> Context:
        return self.flow.ident.context_for(self.span_id)

    def member_ended(self, end_ns: int) -> None:
        with self.lock:
            self.end_ns = max(self.end_ns, end_ns)


@dataclass(frozen=True)
class Member:
    batch: Batch
    map_index: int


@dataclass
class _Cursor:
    batch: Batch
    counter: Iterator[int] = field(default_factory=itertools.count)


_cursor: contextvars.ContextVar[_Cursor | None] = contextvars.ContextVar("pipetrace_prefect_map", default=None)
_member: contextvars.ContextVar[Member | None] = contextvars.ContextVar("pipetrace_prefect_member", default=None)


ENV_MEMBER = "PIPETRACE_PREFECT_MAP"
"""How membership reaches a process-pool worker: Prefect applies the submit's environment around the
task run there (and restores it after); value ``{flow run id}|{map call k}|{map index}|{task}``."""


def take_member(task: str, flow: FlowInfo | None) -> Member | None:
    """The batch membership of the task run starting in this context (then cleared, so tasks it
    submits are not taken for members of the same batch)."""
    member = _member.get()
    if member is not None or _cursor.get() is not None:
        _member.set(None)
        _cursor.set(None)
    carried = os.environ.pop(ENV_MEMBER, None)
    if member is None and carried and flow is not None:
        run_id, k, index, name = carried.split("|", 3)
        if run_id == flow.run_id and name == task:
            batch = Batch(flow, task, int(k), flow.ident.batch_span_id(task, int(k)), Context(), 0)
            member = Member(batch, int(index))
    return member


_flow_lock = threading.Lock()


def open_batch(flow: FlowInfo, task: str, parent: Context) -> Batch:
    with _flow_lock:
        k = flow.map_calls.get(task, 0)
        flow.map_calls[task] = k + 1
    batch = Batch(flow, task, k, flow.ident.batch_span_id(task, k), parent, time.time_ns())
    with _flow_lock:
        flow.batches[f"{task}#{k}"] = batch
    return batch


@contextmanager
def mapping(batch: Batch) -> Iterator[None]:
    """While a ``.map()`` call submits its task runs, each submit takes the next map index."""
    token = _cursor.set(_Cursor(batch))
    try:
        yield
    finally:
        _cursor.reset(token)


def wrap_submit(original: Callable[..., Any]) -> Callable[..., Any]:
    """A task runner's ``submit`` that hands the next map index to the submitted run's context."""

    def submit(self: Any, *args: Any, **kwargs: Any) -> Any:
        cursor = _cursor.get()
        if cursor is None:
            return original(self, *args, **kwargs)
        token = None
        env = _process_env(self)
        try:
            index = next(cursor.counter)
            batch = cursor.batch
            batch.size = index + 1
            token = _member.set(Member(batch, index))
            if isinstance(env, dict):  # process pool: the worker process learns it from the environment
                self._cached_env = {**env, ENV_MEMBER: f"{batch.flow.run_id}|{batch.index}|{index}|{batch.task}"}
        except Exception as exc:  # never into the flow
            warn_once_per(log, "prefect-submit", "pipetrace: map index not recorded: %r", exc)
        try:
            return original(self, *args, **kwargs)
        finally:
            if token is not None:
                _member.reset(token)
            if isinstance(env, dict):
                self._cached_env = env

    submit.__wrapped__ = original  # type: ignore[attr-defined]
    return submit


def _process_env(runner: Any) -> dict[str, str] | None:
    """The environment a process-pool runner will send with the next task (built the way Prefect
    builds it, so the first submit carries membership too); None for other runners."""
    if not hasattr(runner, "_cached_env"):
        return None
    try:
        from prefect.settings import get_current_settings

        current = get_current_settings()
        if runner._cached_env is None or runner._cached_env_settings is not current:
            runner._cached_env = current.to_environment_variables(exclude_unset=True) | os.environ
            runner._cached_env_settings = current
        env = runner._cached_env
        return env if isinstance(env, dict) else None
    except Exception:
        return None


def emit(batch: Batch) -> None:
    """Record the batch span (after the fact, from its members' times)."""
    flow = batch.flow
    end = batch.end_ns or time.time_ns()
    pipetrace.record_span(
        flow.ident, batch.span_id, A.batch_span_name(batch.task), start=batch.start_ns, end=max(end, batch.start_ns),
        parent=batch.parent, synthetic=False,
        attributes={A.SYSTEM: "prefect", A.PIPELINE_NAME: flow.flow, A.PIPELINE_RUN_ID: flow.run_id,
                    A.TASK_NAME: batch.task, A.BATCH_SIZE: batch.size, A.BATCH_INDEX: batch.index,
                    "prefect.task": batch.task},
    )


def emit_all(flow: FlowInfo) -> None:
    with _flow_lock:
        batches = list(flow.batches.values())
        flow.batches.clear()
    for batch in batches:
        try:
            emit(batch)
        except Exception as exc:
            warn_once_per(log, "prefect-batch", "pipetrace: batch span not recorded: %r", exc)
