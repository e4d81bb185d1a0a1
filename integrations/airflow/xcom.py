"""XCom hand-offs as span links: one per producer task instance whose XCom a task actually read.

Airflow has no hook on the read path (a custom XCom backend is the user's; ``deserialize_value`` gets no
task id), so :func:`install` wraps the reads that name their producer: ``BaseXCom.get_one``/``get_all``
(and async twins: ``xcom_pull``, templates, ``XComArg``s) and ``LazyXComSequence`` items (mapped upstream
read by offset). A producer's span id depends on its try, which the consumer cannot see: a first try's is
derived; a later try leaves its ``traceparent`` in one small XCom under :data:`CARRIER_KEY` (base class,
not a custom backend), read when the producer may have retried or the consumer is itself a retry.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from opentelemetry.trace import Link, Span
from pipetrace import attributes as A
from pipetrace.adapter import guarded, link
from pipetrace.adapter.handoffs import Reads, Target, traceparent
from pipetrace.adapter.patching import observe
from pipetrace.identity import RunIdentity

from .settings import active, xcom_links

log = logging.getLogger("pipetrace.airflow")

CARRIER_KEY = "__pipetrace_traceparent"
ALL = None  # a read of every map index a producer pushed (``get_all``)


class Read(NamedTuple):
    """One XCom read: which producer's data, at which map index (-1 unmapped; ``size`` values for ALL)."""

    dag_id: str
    run_id: str
    task_id: str
    key: str
    map_index: int | None
    size: int = 1


reads: Reads[Read] = Reads()  # the reads of the task running in this process


_noting = guarded(log, "airflow-xcom-note", "could not note an XCom read", enabled=lambda: active() and xcom_links())


@_noting
def _got_one(cls: Any, args: tuple[Any, ...], kw: dict[str, Any], value: Any) -> None:
    if value is not None and kw["key"] != CARRIER_KEY and not kw.get("include_prior_dates"):
        mi = kw.get("map_index")
        reads.note(Read(kw["dag_id"], kw["run_id"], kw["task_id"], kw["key"], -1 if mi is None else int(mi)))


@_noting
def _got_all(cls: Any, args: tuple[Any, ...], kw: dict[str, Any], values: Any) -> None:
    if values and not kw.get("include_prior_dates"):
        reads.note(Read(kw["dag_id"], kw["run_id"], kw["task_id"], kw["key"], ALL, len(values)))


@_noting
def _got_items(seq: Any, args: tuple[Any, ...], kw: dict[str, Any], got: Any) -> None:
    """A ``LazyXComSequence`` item or slice: the map indexes it read (rows are ordered by map index)."""
    arg, key = seq._xcom_arg, args[0]
    indexes = list(range(len(seq))[key])[: len(got)] if isinstance(key, slice) else \
        [int(key) if int(key) >= 0 else len(seq) + int(key)]
    for i in indexes:
        reads.note(Read(arg.operator.dag_id, seq._ti.run_id, arg.operator.task_id, arg.key, i))


@guarded(log, "airflow-xcom-install", "XCom reads will not be linked")
def install() -> None:
    """Wrap the task SDK's XCom read methods once per process (see the module doc)."""
    from airflow.sdk.bases.xcom import BaseXCom
    from airflow.sdk.execution_time.lazy_sequence import LazyXComSequence

    for name, got in (("get_one", _got_one), ("aget_one", _got_one), ("get_all", _got_all), ("aget_all", _got_all)):
        if isinstance(BaseXCom.__dict__.get(name), classmethod):
            observe(BaseXCom, name, got)
    observe(LazyXComSequence, "__getitem__", _got_items)


def _link(ti: Any, ident: RunIdentity, read: Read, mi: int, pushed: bool) -> Link | None:
    """The ``xcom`` link to the attempt that pushed: its carrier if it may have left one, else try 1."""
    attrs: dict[str, Any] = {A.LINK_KIND: "xcom", "airflow.xcom.key": read.key, "airflow.xcom.task_id": read.task_id}
    if mi >= 0:
        attrs["airflow.xcom.map_index"] = mi
    first = Link(ident.span_context(ident.task_span_id(read.task_id, mi, 1)), attrs)  # derived: always valid
    if not pushed:
        return first
    from airflow.sdk.bases.xcom import BaseXCom

    carrier = BaseXCom.get_one(key=CARRIER_KEY, dag_id=ti.dag_id, task_id=read.task_id, run_id=ti.run_id, map_index=mi)
    return link(carrier, "xcom", attrs) or first


def targets(ti: Any, ident: RunIdentity) -> Callable[[Read], Iterable[Target]]:
    """How the reads of task instance ``ti`` resolve: one target per producer task instance of its run
    (for a read of all values: every map index of a mapped producer)."""
    consumer_retry = int(ti.try_number or 1) > 1
    dag = getattr(getattr(ti, "task", None), "dag", None)

    def resolve(read: Read) -> Iterable[Target]:
        if read.dag_id != ti.dag_id or read.run_id != ti.run_id:
            return []  # another run's data: not a hand-off inside this trace
        try:  # mapped: asked only of a read of all its values
            producer = dag.get_task(read.task_id)  # type: ignore[union-attr]
            mapped = read.map_index is ALL and (bool(producer.is_mapped) or producer.get_closest_mapped_task_group()
                                                is not None)
        except Exception:
            producer, mapped = None, False
        pushed = consumer_retry or producer is None or int(getattr(producer, "retries", 0) or 0) > 0
        indexes = (read.map_index,) if read.map_index is not ALL else range(read.size) if mapped else (-1,)
        return [((read.task_id, mi), functools.partial(_link, ti, ident, read, mi, pushed)) for mi in indexes]

    return resolve


@guarded(log, "airflow-xcom-publish", "could not publish XCom trace context")
def publish(ti: Any, span: Span) -> None:
    """A second or later try pushes its span's traceparent: readers cannot derive its span id."""
    value = traceparent(span) if int(ti.try_number or 1) > 1 else None  # a first try's id is derived
    if value:
        from airflow.sdk.bases.xcom import BaseXCom

        BaseXCom.set(CARRIER_KEY, value, dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id,
                     map_index=ti.map_index if ti.map_index is not None else -1)
