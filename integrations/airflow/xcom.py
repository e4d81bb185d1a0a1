"""XCom hand-offs as span links: one per producer task instance whose XCom a task actually read.

Where the edge is known: every XCom read of the task SDK goes through ``BaseXCom.get_one`` /
``get_all`` (and their async twins) — ``ti.xcom_pull`` in user code, ``{{ ti.xcom_pull(...) }}`` in a
template, a resolved ``XComArg`` of a task in a mapped task group — or through ``LazyXComSequence``
items (a mapped upstream read by offset: ``sum(values)``, second-order ``.expand``). Those calls name the
producing dag, run, task, key and map index. Airflow offers no hook on the read path (a custom XCom
backend is the user's own setting, and ``deserialize_value`` gets no task id), so :func:`install` wraps
these few class methods once per process: the wrapper calls the original and then notes what was read
(nothing when no value came back). Reads during template rendering (before the task span starts) are
kept until :func:`start_consumer` turns them into links; reads while the task runs become links of the
open span at once. Only reads of the same DAG run are linked; ``include_prior_dates`` reads are not
(their run is unknown).

The producer's span id is derived from its try number, which the consumer cannot see. A producer's
first try has a span id the consumer derives itself; a second or later try leaves its span's
``traceparent`` in one small extra XCom under :data:`CARRIER_KEY`, and the consumer reads it when the
producer may have retried (it has ``retries``) or the consumer itself is a later try (a cleared run). A
missing carrier means try 1. Values under every other key are never read or changed, and the carrier
goes through the base XCom class, never through a custom (e.g. object-store) backend.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Link, Span
from pipetrace import link
from pipetrace.carriers import inject
from pipetrace.identity import RunIdentity
from pipetrace.util.ratelimit import warn_once_per

log = logging.getLogger("pipetrace.airflow")

CARRIER_KEY = "__pipetrace_traceparent"
ALL = None  # a read of every map index a producer pushed (``get_all``)


@dataclass(frozen=True)
class Read:
    """One XCom read: which producer's data, at which map index (-1 unmapped; ``count`` values for ALL)."""

    dag_id: str
    run_id: str
    task_id: str
    key: str
    map_index: int | None
    count: int = 1


@dataclass
class _Consumer:
    ti: Any
    ident: RunIdentity
    span: Span
    linked: set[tuple[str, int]] = field(default_factory=set)


_lock = threading.Lock()
_pending: list[Read] = []
_consumer: list[_Consumer] = []  # the open task span of this process (at most one)
_installed: list[bool] = []


def _note(read: Read) -> None:
    """Record a read: a link of the running task's span, or kept until that span starts."""
    if read.key == CARRIER_KEY:
        return
    with _lock:
        current = _consumer[0] if _consumer else None
        if current is None:
            if len(_pending) < 10_000:
                _pending.append(read)
            return
    try:
        for lk in _links(current.ti, current.ident, current.linked, [read]):
            current.span.add_link(lk.context, lk.attributes)
    except Exception as exc:
        warn_once_per(log, "airflow-xcom-read", "pipetrace: could not link an XCom read: %r", exc)


def _guarded_note(make: Callable[[], Read | list[Read] | None]) -> None:
    try:
        from .settings import xcom_links
        from .state import active

        if not (active() and xcom_links()):
            return
        made = make()
        for read in made if isinstance(made, list) else [made] if made is not None else []:
            _note(read)
    except Exception as exc:
        warn_once_per(log, "airflow-xcom-note", "pipetrace: could not note an XCom read: %r", exc)


def _wrap_get_one(orig: Any) -> Any:
    def note(kw: dict[str, Any], value: Any) -> None:
        if value is None or kw.get("include_prior_dates"):
            return
        mi = kw.get("map_index")
        _guarded_note(lambda: Read(kw["dag_id"], kw["run_id"], kw["task_id"], kw["key"],
                                   -1 if mi is None else int(mi)))

    if _is_async(orig):
        @functools.wraps(orig)
        async def aget_one(cls: Any, **kw: Any) -> Any:
            value = await orig.__get__(None, cls)(**kw)
            note(kw, value)
            return value
        return classmethod(aget_one)

    @functools.wraps(orig)
    def get_one(cls: Any, **kw: Any) -> Any:
        value = orig.__get__(None, cls)(**kw)
        note(kw, value)
        return value
    return classmethod(get_one)


def _wrap_get_all(orig: Any) -> Any:
    def note(kw: dict[str, Any], values: Any) -> None:
        if not values or kw.get("include_prior_dates"):
            return
        _guarded_note(lambda: Read(kw["dag_id"], kw["run_id"], kw["task_id"], kw["key"], ALL, len(values)))

    if _is_async(orig):
        @functools.wraps(orig)
        async def aget_all(cls: Any, **kw: Any) -> Any:
            values = await orig.__get__(None, cls)(**kw)
            note(kw, values)
            return values
        return classmethod(aget_all)

    @functools.wraps(orig)
    def get_all(cls: Any, **kw: Any) -> Any:
        values = orig.__get__(None, cls)(**kw)
        note(kw, values)
        return values
    return classmethod(get_all)


def _sequence_reads(seq: Any, key: Any, got: Any) -> list[Read]:
    """The map indexes a ``LazyXComSequence`` item or slice read (rows are ordered by map index)."""
    arg, ti = seq._xcom_arg, seq._ti
    source = arg.operator
    if isinstance(key, slice):
        indexes = list(range(len(seq))[key])[: len(got)]
    else:
        index = int(key)
        indexes = [index if index >= 0 else len(seq) + index]
    return [Read(source.dag_id, ti.run_id, source.task_id, arg.key, i) for i in indexes]


def _wrap_getitem(orig: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(orig)
    def __getitem__(self: Any, key: Any) -> Any:
        got = orig(self, key)
        _guarded_note(lambda: _sequence_reads(self, key, got))
        return got
    return __getitem__


def _is_async(method: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(getattr(method, "__func__", method))


def install() -> None:
    """Wrap the task SDK's XCom read methods once per process (see the module doc)."""
    with _lock:
        if _installed:
            return
        _installed.append(True)
    try:
        from airflow.sdk.bases.xcom import BaseXCom
        from airflow.sdk.execution_time.lazy_sequence import LazyXComSequence

        for name, wrap in (("get_one", _wrap_get_one), ("aget_one", _wrap_get_one),
                           ("get_all", _wrap_get_all), ("aget_all", _wrap_get_all)):
            orig = BaseXCom.__dict__.get(name)
            if isinstance(orig, classmethod):
                setattr(BaseXCom, name, wrap(orig))
        LazyXComSequence.__getitem__ = _wrap_getitem(LazyXComSequence.__getitem__)  # type: ignore[method-assign]
    except Exception as exc:
        warn_once_per(log, "airflow-xcom-install", "pipetrace: XCom reads will not be linked: %r", exc)


def _producer(ti: Any, task_id: str) -> Any:
    dag = getattr(getattr(ti, "task", None), "dag", None)
    try:
        return dag.get_task(task_id) if dag is not None else None
    except Exception:
        return None


def _mapped(task: Any) -> bool:
    if task is None:
        return False
    try:
        return bool(task.is_mapped) or task.get_closest_mapped_task_group() is not None
    except Exception:
        return False


def _indexes(ti: Any, read: Read) -> list[int]:
    if read.map_index is not ALL:
        return [read.map_index]
    if _mapped(_producer(ti, read.task_id)):
        return list(range(read.count))
    return [-1]


def _carrier(ti: Any, task_id: str, map_index: int) -> Any:
    from airflow.sdk.bases.xcom import BaseXCom

    return BaseXCom.get_one(key=CARRIER_KEY, dag_id=ti.dag_id, task_id=task_id, run_id=ti.run_id,
                            map_index=map_index)


def _links(ti: Any, ident: RunIdentity, linked: set[tuple[str, int]], reads: list[Read]) -> list[Link]:
    """One ``xcom`` link per producer task instance read and not in ``linked`` yet (the attempt that
    pushed); adds what it links to ``linked``."""
    out: list[Link] = []
    consumer_retry = int(ti.try_number or 1) > 1
    for read in reads:
        if read.dag_id != ti.dag_id or read.run_id != ti.run_id:
            continue  # another run's data: not a hand-off inside this trace
        for mi in _indexes(ti, read):
            if (read.task_id, mi) in linked:
                continue
            linked.add((read.task_id, mi))
            attrs: dict[str, Any] = {"airflow.xcom.key": read.key, "airflow.xcom.task_id": read.task_id}
            if mi >= 0:
                attrs["airflow.xcom.map_index"] = mi
            carrier = None
            producer = _producer(ti, read.task_id)
            if consumer_retry or producer is None or int(getattr(producer, "retries", 0) or 0) > 0:
                carrier = _carrier(ti, read.task_id, mi)
            first = ident.span_context(ident.task_span_id(read.task_id, mi, 1))
            lk = link(carrier, "xcom", attrs) or link(first, "xcom", attrs)
            if lk is not None:
                out.append(lk)
    return out


def start_consumer(ti: Any, ident: RunIdentity) -> list[Link]:
    """Links for the reads made while the task's templates were rendered (call before its span starts)."""
    with _lock:
        reads = [r for r in _pending if r.run_id == ti.run_id]
        _pending.clear()
        _consumer.clear()
    try:
        return _links(ti, ident, set(), reads)
    except Exception as exc:
        warn_once_per(log, "airflow-xcom-links", "pipetrace: could not link XCom reads: %r", exc)
        return []


def consumer_started(ti: Any, ident: RunIdentity, span: Span, links: list[Link]) -> None:
    """From now on, reads of this process are links of ``span`` (``links``: those it started with)."""
    linked = {(str(lk.attributes.get("airflow.xcom.task_id")), int(lk.attributes.get("airflow.xcom.map_index", -1)))  # type: ignore[arg-type]
              for lk in links if lk.attributes}
    with _lock:
        _consumer[:] = [_Consumer(ti, ident, span, linked)]


def consumer_finished() -> None:
    with _lock:
        _consumer.clear()
        _pending.clear()


def publish(ti: Any, span: Span) -> None:
    """A second or later try pushes its span's traceparent: readers cannot derive its span id."""
    try:
        if int(ti.try_number or 1) <= 1:
            return  # consumers derive the span id of a first try
        from airflow.sdk.bases.xcom import BaseXCom
        from opentelemetry import trace

        carrier = inject({}, trace.set_span_in_context(span))
        if "traceparent" not in carrier:
            return
        BaseXCom.set(CARRIER_KEY, carrier["traceparent"], dag_id=ti.dag_id, task_id=ti.task_id,
                     run_id=ti.run_id, map_index=ti.map_index if ti.map_index is not None else -1)
    except Exception as exc:
        warn_once_per(log, "airflow-xcom-publish", "pipetrace: could not publish XCom trace context: %r", exc)


__all__ = ["CARRIER_KEY", "Read", "consumer_finished", "consumer_started", "install", "publish", "start_consumer"]
