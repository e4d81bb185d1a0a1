"""The one builder of task-attempt attributes (``cicd.pipeline.*`` and ``pipetrace.task.*``).

Every adapter's attempt span — live, or recorded after the fact for an attempt that never ran or whose
process died — starts from :func:`attempt_attributes`, then adds its orchestrator's own keys.
"""

from __future__ import annotations

from typing import Any

from .. import attributes as A
from ..spans import _clean_attrs

clean = _clean_attrs
"""Attribute values made exportable: None dropped, scalars and scalar lists kept, anything else str()."""


def attempt_attributes(system: str, pipeline: str, run_id: str, task: str, try_number: int | None = None, *,
                       task_run_id: str | None = None, map_index: int | None = None) -> dict[str, Any]:
    """The attributes every attempt span of ``system`` has: run, task, try, mapped index, attempt id."""
    attrs: dict[str, Any] = {A.SYSTEM: system, A.PIPELINE_NAME: pipeline, A.PIPELINE_RUN_ID: run_id,
                             A.TASK_NAME: task}
    if task_run_id is not None:
        attrs[A.TASK_RUN_ID] = task_run_id
    if try_number is not None:
        attrs[A.TRY_NUMBER] = int(try_number)
    if map_index is not None and map_index >= 0:
        attrs[A.MAP_INDEX] = int(map_index)
    return attrs


def run_attributes(system: str, pipeline: str, run_id: str) -> dict[str, Any]:
    """What every span belonging to a run as a whole (run, batch) carries."""
    return {A.SYSTEM: system, A.PIPELINE_NAME: pipeline, A.PIPELINE_RUN_ID: run_id}
