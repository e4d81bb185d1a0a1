"""XCom hand-offs as span links, without touching any XCom value.

The producer's span id depends on its try number, which the consumer cannot know. So a producer whose
XCom a downstream task reads (through ``XComArg``/TaskFlow arguments) also pushes one small extra XCom
under :data:`CARRIER_KEY` holding its span's ``traceparent``; the consumer reads those carriers for
every XCom it is wired to and links to each. Values under every other key are never read or changed,
and the carrier goes through the base XCom class, never through a custom (e.g. object-store) backend.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from opentelemetry.trace import Link, Span
from pipetrace import link
from pipetrace.carriers import inject
from pipetrace.ratelimit import warn_once_per

log = logging.getLogger("pipetrace.airflow")

CARRIER_KEY = "__pipetrace_traceparent"


def _is_mapped(task: Any) -> bool:
    return hasattr(task, "_get_specified_expand_input")


def xcom_sources(task: Any) -> Iterator[tuple[Any, str]]:
    """``(upstream operator, key)`` for every XCom ``task`` is wired to read (unrendered task)."""
    from airflow.sdk.definitions.xcom_arg import XComArg

    if _is_mapped(task):
        yield from task._get_specified_expand_input().iter_references()
        yield from XComArg.iter_xcom_references(getattr(task, "partial_kwargs", {}))
    else:
        yield from XComArg.iter_xcom_references(task)


def original_task(ti: Any) -> Any:
    """The DAG's own (unrendered) task for a running task instance."""
    task = ti.task
    dag = getattr(task, "dag", None)
    if dag is not None:
        try:
            return dag.get_task(ti.task_id)
        except Exception:
            return task
    return task


def has_xcom_consumers(task: Any) -> bool:
    """True when some downstream task reads this task's XCom through an XComArg."""
    for downstream in getattr(task, "downstream_list", ()):
        if any(op.task_id == task.task_id for op, _ in xcom_sources(downstream)):
            return True
    return False


def publish(ti: Any, span: Span) -> None:
    """Push the producer span's traceparent for its consumers (only when it has any)."""
    try:
        task = original_task(ti)
        if not has_xcom_consumers(task):
            return
        from airflow.sdk.bases.xcom import BaseXCom
        from opentelemetry import trace

        carrier = inject({}, trace.set_span_in_context(span))
        if "traceparent" not in carrier:
            return
        BaseXCom.set(CARRIER_KEY, carrier["traceparent"], dag_id=ti.dag_id, task_id=ti.task_id,
                     run_id=ti.run_id, map_index=ti.map_index if ti.map_index is not None else -1)
    except Exception as exc:
        warn_once_per(log, "airflow-xcom-publish", "pipetrace: could not publish XCom trace context: %r", exc)


def _carriers(ti: Any, producer: Any) -> list[object]:
    from airflow.sdk.bases.xcom import BaseXCom

    common = {"key": CARRIER_KEY, "dag_id": ti.dag_id, "task_id": producer.task_id, "run_id": ti.run_id}
    if not _is_mapped(producer):
        return [BaseXCom.get_one(map_index=-1, **common)]
    indexes: Any = None
    if ti.map_index is not None and ti.map_index >= 0:
        indexes = ti.get_relevant_upstream_map_indexes(producer, None, session=None)
    if indexes is None:
        return list(BaseXCom.get_all(**common) or [])
    if isinstance(indexes, int):
        indexes = [indexes]
    return [BaseXCom.get_one(map_index=i, **common) for i in indexes]


def upstream_links(ti: Any) -> list[Link]:
    """One ``xcom`` link per producer task attempt whose XCom this task instance reads."""
    links: list[Link] = []
    try:
        seen: set[str] = set()
        for producer, key in xcom_sources(original_task(ti)):
            if producer.task_id in seen:
                continue
            seen.add(producer.task_id)
            for value in _carriers(ti, producer):
                lk = link(value, "xcom", {"airflow.xcom.key": key, "airflow.xcom.task_id": producer.task_id})
                if lk is not None:
                    links.append(lk)
    except Exception as exc:
        warn_once_per(log, "airflow-xcom-links", "pipetrace: could not read XCom trace context: %r", exc)
    return links


__all__ = ["CARRIER_KEY", "has_xcom_consumers", "publish", "upstream_links", "xcom_sources"]
