"""Identity, header and attribute rules of the Celery adapter, and the small state its handlers share.

A Celery workflow (a task and everything it starts: chain links, group and chord members, retries) is
one pipeline run: run id = Celery's ``root_id`` (or the ``pipetrace_run`` header), pipeline = the first
task's name (the ``pipetrace_pipeline`` header). Every task attempt has a span id derived from its task
id and try number (:class:`~pipetrace.adapter.Workflows`), so a chord body can link to the header tasks
from their ids alone, and a span recorded after the fact (revoked, rejected, lost) and a live one for the
same attempt are one span in the store. The state is bounded (the adapter API's registries): a signal
that never comes cannot leak memory.
"""

from __future__ import annotations

import functools
from typing import Any

from pipetrace.adapter import Attempts
from pipetrace.adapter.messaging import Sends, app_system, static_attributes
from pipetrace.adapter.workflows import Workflows

SYSTEM = "celery"
PIPELINE_HEADER = "pipetrace_pipeline"
"""The workflow's pipeline; not sent when it is the task's own name, which a worker assumes without it."""
CHORD_HEADER = "pipetrace_chord_header"
"""Comma list of a chord's header task ids, written on the chord body so it can link to each."""
RUN_HEADER = "pipetrace_run"
"""The workflow's run id when it is not the message's ``root_id``: a group's members, or every workflow
one traced block publishes, are one run (docs/celery.md). Inherited by what a task of the run publishes."""


def task_name(task: Any, request: Any) -> str:
    return str(getattr(task, "name", None) or getattr(request, "task", None) or "unknown")


workflows = Workflows(SYSTEM, pipeline_header=PIPELINE_HEADER, run_header=RUN_HEADER, links_header=CHORD_HEADER,
                      plain=("celery.app.task:Context",), task_name=task_name)
read, pipeline, run_id = workflows.read, workflows.pipeline, workflows.run_id
"""Our header values from a task request, a worker ``Request`` or a mapping; the pipeline and run id in them."""
attempt_span_id, run_identity = workflows.attempt_span_id, workflows.run_identity
record_attempt, current = workflows.record_attempt, workflows.current


@functools.cache
def _app_getter() -> Any:
    from celery._state import get_current_app

    return get_current_app


def current_app() -> Any:
    """The current Celery app itself (not Celery's proxy): per-app caches key on it."""
    return _app_getter()()


def shared_attributes(app: Any, operation: str, task: str, dest: str, routing_key: str | None) -> dict[str, Any]:
    """What every ``send``/``process`` of ``task`` on ``dest`` has in common, as a new dict."""
    return static_attributes(app_system(app), dest, operation, routing_key, SYSTEM, task).copy()


publishes = Sends("pipetrace.celery.publish_unconfirmed")  # (ended without after_task_publish)
producer_runs = workflows.producer_runs
attempts: Attempts[str] = Attempts()
