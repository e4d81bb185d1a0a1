"""Small bounded state the Celery signal handlers share (publish spans between before/after publish,
task spans between prerun/postrun). Bounded so that a signal that never comes cannot leak memory."""

from __future__ import annotations

import contextvars
import threading
from typing import Any

from opentelemetry.trace import Span

from . import headers
from .common import task_name

MAX_PENDING = 10_000


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


class Pending:
    """Insertion-ordered map with a size bound; evicted entries are handed back to be closed."""

    def __init__(self, bound: int = MAX_PENDING) -> None:
        self._items: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.bound = bound

    def put(self, key: str, value: Any) -> list[Any]:
        items = self._items
        items.pop(key, None)  # a re-put key moves to the end, as in an OrderedDict
        items[key] = value  # one dict operation each: atomic under the GIL, no lock on the common path
        if len(items) <= self.bound:
            return []
        evicted = []
        with self._lock:  # only eviction walks the dict
            while len(items) > self.bound:
                try:
                    evicted.append(items.pop(next(iter(items))))
                except (StopIteration, KeyError, RuntimeError):  # another thread changed it meanwhile
                    break
        return evicted

    def pop(self, key: str) -> Any:
        return self._items.pop(key, None)

    def get(self, key: str) -> Any:
        return self._items.get(key)

    def __len__(self) -> int:
        return len(self._items)


class ProducerRuns:
    """Producer side: the run each trace belongs to, so that everything one traced block publishes
    (several ``delay()`` calls, a group's members, a chord's header) is one run: the first message
    published in the trace names it (its ``root_id`` and task name). Bounded: oldest traces go first."""

    def __init__(self, bound: int = 4096) -> None:
        self._runs: dict[int, tuple[str, str]] = {}
        self.bound = bound

    def claim(self, trace_id: int, run_id: str, pipeline: str) -> tuple[str, str]:
        """(run id, pipeline) of the trace: the one given if the trace has none yet."""
        runs = self._runs
        found = runs.get(trace_id)
        if found is not None:
            return found
        if len(runs) >= self.bound:
            try:
                del runs[next(iter(runs))]
            except (StopIteration, KeyError, RuntimeError):
                pass
        runs[trace_id] = (run_id, pipeline)
        return run_id, pipeline

    def get(self, trace_id: int) -> tuple[str, str] | None:
        return self._runs.get(trace_id)

    def __len__(self) -> int:
        return len(self._runs)


publishes = Pending()
producer_runs = ProducerRuns()
attempts = Pending()
current: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar("pipetrace_celery_task", default=None)
