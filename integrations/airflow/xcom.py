"""XCom hand-offs as span links, without touching any XCom value.

The producer's span id is derived from its try number, which the consumer cannot see. The common case
costs nothing: a producer's first try has a span id the consumer derives itself. Only when that may be
wrong does the producer leave its span's ``traceparent`` in one small extra XCom under
:data:`CARRIER_KEY` — on a second or later try, and for mapped instances (whose indexes the consumer
would otherwise have to look up) — and the consumer reads it when the producer may have retried (it
has ``retries``) or the consumer itself is a later try (a cleared run). A missing carrier means try 1.
Values under every other key are never read or changed, and the carrier goes through the base XCom
class, never through a custom (e.g. object-store) backend.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from opentelemetry.trace import Link, Span, SpanContext
from pipetrace import link
from pipetrace.carriers import inject
from pipetrace.identity import RunIdentity
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
    """Push the producer span's traceparent for its consumers, when they cannot derive it (see above)."""
    try:
        task = original_task(ti)
        if int(ti.try_number or 1) <= 1 and not _is_mapped(task):
            return  # consumers derive the span id of a first try
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


def _first_try(ident: RunIdentity, producer: Any) -> SpanContext:
    return ident.span_context(ident.task_span_id(producer.task_id, None, 1))


def upstream_links(ti: Any, ident: RunIdentity) -> list[Link]:
    """One ``xcom`` link per producer task attempt whose XCom this task instance reads."""
    links: list[Link] = []
    try:
        seen: set[str] = set()
        consumer_retry = int(ti.try_number or 1) > 1
        for producer, key in xcom_sources(original_task(ti)):
            if producer.task_id in seen:
                continue
            seen.add(producer.task_id)
            attrs = {"airflow.xcom.key": key, "airflow.xcom.task_id": producer.task_id}
            if not _is_mapped(producer):
                carrier = None
                if consumer_retry or int(getattr(producer, "retries", 0) or 0) > 0:
                    carrier = _carriers(ti, producer)[0]
                links.append(link(carrier, "xcom", attrs) or link(_first_try(ident, producer), "xcom", attrs))
                continue
            for value in _carriers(ti, producer):
                lk = link(value, "xcom", attrs)
                if lk is not None:
                    links.append(lk)
    except Exception as exc:
        warn_once_per(log, "airflow-xcom-links", "pipetrace: could not read XCom trace context: %r", exc)
    return links


__all__ = ["CARRIER_KEY", "has_xcom_consumers", "publish", "upstream_links", "xcom_sources"]
