"""Small bounded state the Celery signal handlers share (publish spans between before/after publish,
task spans between prerun/postrun), in the adapter API's one bounded registry: a signal that never comes
cannot leak memory."""

from __future__ import annotations

import contextvars
from typing import Any

from opentelemetry.trace import Span
from pipetrace.adapter import OpenAttempts

from . import headers
from .common import task_name


class Attempt:
    """One running task attempt: its span, the context token to detach and the workflow it is in
    (the pipeline name is read from the request only when something asks for it)."""

    __slots__ = ("span", "token", "task", "request", "root_id", "_pipeline", "_run_id", "expected_error", "failed",
                 "retried", "var_token")

    def __init__(self, span: Span, token: Any, task: Any, request: Any, root_id: str,
                 pipeline: str | None = None) -> None:
        self.span = span
        self.token = token
        self.task = task
        self.request = request
        self.root_id = root_id
        self._pipeline = pipeline
        self._run_id: str | None = None
        self.expected_error = False
        self.failed = False
        self.retried = False
        self.var_token: Any = None

    @property
    def pipeline(self) -> str:
        if self._pipeline is None:
            self._pipeline = headers.pipeline(headers.read(self.request), task_name(self.task, self.request))
        return self._pipeline

    @property
    def run_id(self) -> str:
        """The workflow's run id (read from the request only when the task publishes something)."""
        if self._run_id is None:
            self._run_id = headers.run_id(headers.read(self.request), self.root_id)
        return self._run_id


class ProducerRuns(OpenAttempts[int, tuple[str, str]]):
    """Producer side: the run each trace belongs to, so that everything one traced block publishes
    (several ``delay()`` calls, a group's members, a chord's header) is one run: the first message
    published in the trace names it (its ``root_id`` and task name). Bounded: oldest traces go first."""

    def claim(self, trace_id: int, run_id: str, pipeline: str) -> tuple[str, str]:
        """(run id, pipeline) of the trace: the one given if the trace has none yet."""
        found = self.get(trace_id)
        if found is not None:
            return found
        self.put(trace_id, (run_id, pipeline))
        return run_id, pipeline


publishes: OpenAttempts[str, Any] = OpenAttempts()
producer_runs = ProducerRuns(bound=4096)
attempts: OpenAttempts[str, Attempt] = OpenAttempts()
current: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar("pipetrace_celery_task", default=None)
