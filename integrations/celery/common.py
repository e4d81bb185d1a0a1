"""Identity, header and attribute rules of the Celery adapter, and the small state its handlers share.

A Celery workflow (a task and everything it starts: chain links, group and chord members, retries) is
one pipeline run: run id = Celery's ``root_id`` (or the ``pipetrace_run`` header), pipeline = the first
task's name (the ``pipetrace_pipeline`` header). Every task attempt has a span id derived from its task
id and try number, so a chord body can link to the header tasks from their ids alone, and a span recorded
after the fact (revoked, rejected, lost) and a live one for the same attempt are one span in the store.
The state is bounded (the adapter API's registries): a signal that never comes cannot leak memory.
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry.trace import SpanKind
from pipetrace.adapter import Attempts, OpenAttempts, attempt_attributes, record_span
from pipetrace.adapter import headers as hdr
from pipetrace.adapter.messaging import PUBLISHED_HEADER, ProducerRuns, static_attributes, url_system
from pipetrace.carriers import extract
from pipetrace.identity import RunIdentity, derive_task_span_id

SYSTEM = "celery"
PIPELINE_HEADER = "pipetrace_pipeline"
"""The workflow's pipeline; not sent when it is the task's own name, which a worker assumes without it."""
CHORD_HEADER = "pipetrace_chord_header"
"""Comma list of a chord's header task ids, written on the chord body so it can link to each."""
RUN_HEADER = "pipetrace_run"
"""The workflow's run id when it is not the message's ``root_id``: a group's members, or every workflow
one traced block publishes, are one run (docs/celery.md). Inherited by what a task of the run publishes."""
KEYS = (*hdr.TRACE_KEYS, PUBLISHED_HEADER, PIPELINE_HEADER, CHORD_HEADER, RUN_HEADER)


@functools.cache
def _plain_types() -> tuple[type, ...]:
    from celery.app.task import Context

    return (Context,)


def read(request: Any) -> dict[str, Any]:
    """Our header values from a task request (``task.request``), a worker ``Request`` or a mapping."""
    return hdr.read(request, KEYS, _plain_types())


def pipeline(values: Mapping[str, Any], default: str) -> str:
    """The workflow's pipeline from the headers, or ``default`` when absent or unusable (any producer
    can write it, and it becomes a span attribute and the store's pipeline column)."""
    return hdr.checked(values.get(PIPELINE_HEADER), default)


def run_id(values: Mapping[str, Any], default: str) -> str:
    """The workflow's run id from the headers, or ``default`` (the ``root_id``); same rules."""
    return hdr.checked(values.get(RUN_HEADER), default)


def attempt_span_id(task_id: str, try_number: int) -> int:
    return derive_task_span_id(SYSTEM, SYSTEM, str(task_id), "attempt", None, int(try_number))


def task_name(task: Any, request: Any) -> str:
    return str(getattr(task, "name", None) or getattr(request, "task", None) or "unknown")


def run_identity(root_id: str) -> RunIdentity:
    """Identity of a workflow whose producer sent no trace context (derived trace id)."""
    return RunIdentity(SYSTEM, SYSTEM, str(root_id))


@functools.cache
def _app_getter() -> Any:
    from celery._state import get_current_app

    return get_current_app


def current_app() -> Any:
    """The current Celery app itself (not Celery's proxy): per-app caches key on it."""
    return _app_getter()()


_system_cache: dict[int, str] = {}


def broker_system(app: Any) -> str:
    """``messaging.system`` from the app's broker URL, cached per app."""
    system = _system_cache.get(id(app))
    if system is None:
        try:
            system = url_system(str(app.conf.broker_url or "amqp://"))
        except Exception:
            system = "rabbitmq"
        _system_cache[id(app)] = system
    return system


def shared_attributes(app: Any, operation: str, task: str, dest: str, routing_key: str | None) -> dict[str, Any]:
    """What every ``send``/``process`` of ``task`` on ``dest`` has in common, as a new dict."""
    return static_attributes(broker_system(app), dest, operation, routing_key, SYSTEM, task).copy()


def destination(delivery_info: Any) -> tuple[str, str | None]:
    """(destination name, routing key) from a request's delivery info."""
    dest, rk = hdr.delivered_to(delivery_info)
    return dest or "celery", rk


def record_attempt(name: str, task_id: str, values: Mapping[str, Any], try_number: int, root_id: Any, result: str,
                   attrs: Mapping[str, Any], *, messaging: Mapping[str, Any] | None = None, start: int | None = None,
                   span_id: int | None = None, error: BaseException | str | None = None) -> None:
    """An attempt span recorded after the fact, with the attempt's derived span id (unless ``span_id``):
    an attempt that never ran (revoked, rejected) or whose process died (``start``: when it began)."""
    root = run_id(values, str(root_id or task_id))
    now = time.time_ns()
    start = now if start is None else start
    base = dict(messaging or {})
    base.update(attempt_attributes(SYSTEM, pipeline(values, name), root, name, try_number, task_run_id=task_id))
    base.update(attrs)
    record_span(run_identity(root), span_id or attempt_span_id(task_id, try_number), f"task {name}", start=start,
                end=max(now, start), parent=extract(values, source=f"celery task {name}"), attributes=base,
                result=result, kind=SpanKind.CONSUMER, synthetic=True, error=error)


class Workflow:
    """What a running attempt knows of its workflow: pipeline and run id, read from the request only when
    a publish or a batch asks for them, and whether it failed."""

    __slots__ = ("task", "request", "root_id", "_pipeline", "_run_id", "failed", "var_token")

    def __init__(self, task: Any, request: Any, root_id: str) -> None:
        self.task, self.request, self.root_id = task, request, root_id
        self._pipeline: str | None = None
        self._run_id: str | None = None
        self.failed = False
        self.var_token: Any = None

    @property
    def pipeline(self) -> str:
        if self._pipeline is None:
            self._pipeline = pipeline(read(self.request), task_name(self.task, self.request))
        return self._pipeline

    @property
    def run_id(self) -> str:
        if self._run_id is None:
            self._run_id = run_id(read(self.request), self.root_id)
        return self._run_id


publishes: OpenAttempts[str, Any] = OpenAttempts()
producer_runs = ProducerRuns(bound=4096)
attempts: Attempts[str] = Attempts()
current: contextvars.ContextVar[Workflow | None] = contextvars.ContextVar("pipetrace_celery_task", default=None)
