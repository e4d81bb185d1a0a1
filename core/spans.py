"""Span helpers: live task and batch spans, after-the-fact run and placeholder spans, data links.

Every helper is guarded: if pipetrace itself fails, the body still runs (under a non-recording span)
and the failure is logged once; exceptions of the body always propagate unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, Link, Span, SpanKind, Status, StatusCode

from . import attributes as A
from .carriers import span_context_of
from .identity import RunIdentity
from .machinery import begin_span, start_span
from .machinery.current import attach_span
from .machinery.record import all_plain
from .processing.runtime import get_tracer
from .redaction.text import exception_description, status_description
from .util import losses
from .util.ratelimit import warn_once_per

log = logging.getLogger("pipetrace.spans")

Time = datetime | int | float | None


def to_ns(value: Time) -> int | None:
    """datetime, epoch seconds (float) or epoch nanoseconds (int > 1e15) → epoch nanoseconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp() * 1e9)
    if isinstance(value, int) and value > 10**15:
        return value
    return int(float(value) * 1e9)


def identity(system: str, pipeline: str, run_id: str, upstream: object = None) -> RunIdentity:
    """The run's identity; ``upstream`` is any carrier/context/traceparent from the run's metadata."""
    sc = span_context_of(upstream, source=f"{system} run metadata") if upstream is not None else None
    return RunIdentity(str(system), str(pipeline), str(run_id), sc)


def link(carrier_or_context: object, kind: str, attributes: Mapping[str, Any] | None = None) -> Link | None:
    """A span link of ``kind`` (xcom, asset, result, message) to the span carried; None if none valid."""
    sc = span_context_of(carrier_or_context, source=f"{kind} link")
    if sc is None:
        return None
    attrs: dict[str, Any] = {A.LINK_KIND: kind}
    if attributes:
        attrs.update(attributes)
    return Link(sc, attrs)


def _links(links: Iterable[Link | None]) -> list[Link]:
    return [lk for lk in links if lk is not None]


def _clean_attrs(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if value is None:
            continue
        if isinstance(value, (str, bool, int, float)):
            out[str(key)] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, bool, int, float)) for v in value):
            out[str(key)] = list(value)
        else:
            out[str(key)] = str(value)
    return out


def _record_failure(span: Span, exc: BaseException, result_key: str) -> None:
    span.record_exception(exc, escaped=True)
    span.set_attribute(A.ERROR_TYPE, f"{type(exc).__module__}.{type(exc).__qualname__}"
                       if type(exc).__module__ != "builtins" else type(exc).__qualname__)
    span.set_attribute(result_key, A.RESULT_FAILURE)
    span.set_status(Status(StatusCode.ERROR, exception_description(exc)))


def mark_result(span: Span, result: str, *, key: str = A.TASK_RESULT, error: BaseException | None = None) -> None:
    """Set a span's result; failures also set status ERROR (and the exception, when given)."""
    try:
        if error is not None:
            _record_failure(span, error, key)
        span.set_attribute(key, result)
        if result in A.FAILED_RESULTS:
            span.set_status(Status(StatusCode.ERROR))
    except Exception as exc:
        warn_once_per(log, "mark_result", "pipetrace: could not set span result: %r", exc)


def _has_attr(span: Span, key: str) -> bool:
    attrs = getattr(span, "attributes", None)
    return bool(attrs) and key in attrs  # type: ignore[operator]


def start_task_span(
    system: str, pipeline: str, run_id: str, task: str, *, try_number: int = 1, map_index: int | None = None,
    attributes: Mapping[str, Any] | None = None, links: Iterable[Link | None] = (), upstream: object = None,
    batch: str | None = None, parent: Context | None = None, kind: SpanKind = SpanKind.INTERNAL,
    start_time: Time = None, task_run_id: str | None = None, ident: RunIdentity | None = None,
    clean_attributes: bool = False, base: Mapping[str, Any] | None = None, name: str | None = None,
    span_id: int | None = None,
) -> Span:
    """Start (not enter) a task-attempt span with derived ids; for adapters whose start and end are
    separate events. Never raises: returns a non-recording span if pipetrace fails.

    A deferred span (:func:`pipetrace.machinery.begin_span`): ids and sampling decided now, its record
    made when it ends; it turns into the SDK's own span for what only that can keep (an exception, a
    limit, a processor watching running spans), so what is exported is the eager span's.

    An adapter that starts many attempts of one run keeps what they share and passes it: ``ident`` (the
    run's identity, ``upstream`` then unused), ``parent`` (the run's or batch's context), ``base`` (the
    run's part of the attributes, as ``pipetrace.adapter.attributes.run_attributes`` makes it; copied, never changed)
    and, with ``clean_attributes``, ``attributes`` it vouches are already as :func:`_clean_attrs` returns
    them. ``name``: the span's name when it is not ``task``'s (Dagster's mapped copies share one);
    ``span_id``: the attempt's derived span id when the adapter has it already."""
    try:
        if ident is None:
            ident = identity(system, pipeline, run_id, upstream)
        if parent is None:
            parent_id = ident.batch_span_id(batch) if batch else ident.run_span_id
            parent = ident.context_for(parent_id)
        mapped = map_index is not None and map_index >= 0
        run_part = base if base is not None else {A.SYSTEM: system, A.PIPELINE_NAME: pipeline,
                                                   A.PIPELINE_RUN_ID: run_id}
        # one dict display (no calls): the run's part, the attempt's, then the adapter's
        attrs: dict[str, Any] = {
            **run_part, A.TASK_NAME: task, A.TRY_NUMBER: int(try_number),
            **({A.MAP_INDEX: int(map_index)} if mapped else {}),  # type: ignore[arg-type]  # (mapped: not None)
            A.TASK_RUN_ID: task_run_id or f"{run_id}/{task}" + (f"[{map_index}]" if mapped else "") + f"#{try_number}",
            **({} if not attributes else attributes if clean_attributes else _clean_attrs(attributes)),
        }
        start = start_time if type(start_time) is int and start_time > 10**15 else to_ns(start_time)
        # all plain: the end then checks only what was set later
        plain = all_plain(attrs)
        return begin_span(
            get_tracer(), name or A.task_span_name(task), context=parent, kind=kind, attributes=attrs,
            links=_links(links) if links else (), start_time=start, plain_attributes=plain,
            span_id=span_id if span_id is not None else ident.task_span_id(task, map_index, try_number),
            record_exception=False, set_status_on_exception=False,
        )
    except Exception as exc:
        losses.count("span_start")
        warn_once_per(log, "task_span", "pipetrace: could not start task span: %r", exc)
        return INVALID_SPAN


def end_task_span(span: Span, *, error: BaseException | None = None, result: str | None = None,
                  end_time: Time = None) -> None:
    """End a span from :func:`start_task_span` with a result (success unless told or failed)."""
    try:
        if error is not None:
            _record_failure(span, error, A.TASK_RESULT)
            if result is not None:
                span.set_attribute(A.TASK_RESULT, result)
        elif result is not None:
            mark_result(span, result)
        elif not _has_attr(span, A.TASK_RESULT):
            span.set_attribute(A.TASK_RESULT, A.RESULT_SUCCESS)
        span.end(end_time=to_ns(end_time))
    except Exception as exc:
        warn_once_per(log, "task_span_end", "pipetrace: could not end task span: %r", exc)


class _LiveTaskSpan:
    """Context manager of :func:`task_span` (a class: cheaper than a generator on the per-task path)."""

    __slots__ = ("span", "_token")

    def __init__(self, span: Span) -> None:
        self.span = span
        self._token: object = None

    def __enter__(self) -> Span:
        try:
            self._token = attach_span(self.span)
        except Exception as exc:
            warn_once_per(log, "task_span_enter", "pipetrace: could not activate task span: %r", exc)
        return self.span

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self._token is not None:
            try:
                context_api.detach(self._token)  # type: ignore[arg-type]
            except Exception:
                pass
        end_task_span(self.span, error=exc)


def task_span(
    system: str, pipeline: str, run_id: str, task: str, *, try_number: int = 1, map_index: int | None = None,
    attributes: Mapping[str, Any] | None = None, links: Iterable[Link | None] = (), upstream: object = None,
    batch: str | None = None, parent: Context | None = None, kind: SpanKind = SpanKind.INTERNAL,
) -> _LiveTaskSpan:
    """A live span for one task attempt, current while the body runs (user spans nest under it).

    Its parent is the run span (or the ``batch`` span) computed from the run identity, so the worker
    needs nothing but the run id; ``upstream`` is the run's caller context if its metadata has one.
    An exception of the body is recorded (result failure) and propagates unchanged.
    """
    return _LiveTaskSpan(start_task_span(
        system, pipeline, run_id, task, try_number=try_number, map_index=map_index, attributes=attributes,
        links=links, upstream=upstream, batch=batch, parent=parent, kind=kind))


@contextmanager
def batch_span(name: str, *, index: int | None = None, size: int | None = None,
               links: Iterable[Link | None] = (), attributes: Mapping[str, Any] | None = None,
               kind: SpanKind = SpanKind.INTERNAL) -> Iterator[Span]:
    """A live ``batch {name}`` span, child of the current span, usable inside any task."""
    try:
        attrs = _clean_attrs(attributes)
        if index is not None:
            attrs[A.BATCH_INDEX] = int(index)
        if size is not None:
            attrs[A.BATCH_SIZE] = int(size)
        current = trace.get_current_span().get_span_context()
        parent_attrs = getattr(trace.get_current_span(), "attributes", None) or {}
        for key in (A.SYSTEM, A.PIPELINE_NAME, A.PIPELINE_RUN_ID):
            if key in parent_attrs and key not in attrs:
                attrs[key] = parent_attrs[key]
        span = start_span(get_tracer(), A.batch_span_name(name), kind=kind, attributes=attrs,
                          links=_links(links), record_exception=False, set_status_on_exception=False)
        del current
    except Exception as exc:
        losses.count("span_start")
        warn_once_per(log, "batch_span", "pipetrace: could not start batch span: %r", exc)
        span = INVALID_SPAN
    with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
        try:
            yield span
        except BaseException as exc:
            try:
                _record_failure(span, exc, A.TASK_RESULT)
                span.end()
            except Exception:
                pass
            raise
    try:
        span.end()
    except Exception as exc:
        warn_once_per(log, "batch_span_end", "pipetrace: could not end batch span: %r", exc)


def record_span(
    ident: RunIdentity, span_id: int, name: str, *, start: Time, end: Time, parent_span_id: int | None = None,
    attributes: Mapping[str, Any] | None = None, links: Iterable[Link | None] = (), result: str | None = None,
    result_key: str = A.TASK_RESULT, kind: SpanKind = SpanKind.INTERNAL, synthetic: bool = True,
    error: BaseException | str | None = None, parent: Context | None = None,
) -> bool:
    """Emit a finished span after the fact with a derived ``span_id`` (a task that never ran, a batch
    known only at run end, a worker that died). ``parent_span_id`` None makes it the run's root (child
    of the upstream caller if any). Returns False (and logs) if it could not be emitted."""
    try:
        if parent is None:
            if parent_span_id is not None:
                parent = ident.context_for(parent_span_id)
            else:
                parent = ident.upstream_context()
        attrs = _clean_attrs(attributes)
        if synthetic:
            attrs[A.SYNTHETIC] = True
        if result is not None:
            attrs[result_key] = result
        trace_id = ident.trace_id if parent is None else None
        span = start_span(get_tracer(), name, context=parent or Context(), kind=kind, attributes=attrs,
                          links=_links(links), start_time=to_ns(start), trace_id=trace_id, span_id=span_id)
        if isinstance(error, BaseException):
            _record_failure(span, error, result_key)
            if result is not None:
                span.set_attribute(result_key, result)
        elif error:
            span.set_attribute(A.ERROR_TYPE, str(error))
            span.set_status(Status(StatusCode.ERROR, status_description(error)))
        elif result in A.FAILED_RESULTS:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=to_ns(end))
        return True
    except Exception as exc:
        losses.count("span_start")
        warn_once_per(log, "record_span", "pipetrace: could not record span %s: %r", name, exc)
        return False


def run_span(
    system: str, pipeline: str, run_id: str, *, start: Time, end: Time, result: str,
    attributes: Mapping[str, Any] | None = None, upstream: object = None, links: Iterable[Link | None] = (),
    error: BaseException | str | None = None, parent: Context | None = None,
) -> bool:
    """Emit the run span ``run {pipeline}`` once the run has ended, from the run record.

    Root of the run's trace, or child of the upstream caller when the run's metadata carries one."""
    ident = identity(system, pipeline, run_id, upstream)
    attrs = {A.SYSTEM: system, A.PIPELINE_NAME: pipeline, A.PIPELINE_RUN_ID: run_id}
    attrs.update(_clean_attrs(attributes))
    return record_span(ident, ident.run_span_id, A.run_span_name(pipeline), start=start, end=end,
                       attributes=attrs, links=links, result=result, result_key=A.PIPELINE_RESULT,
                       kind=SpanKind.SERVER, synthetic=False, error=error, parent=parent)


def run_context(system: str, pipeline: str, run_id: str, upstream: object = None) -> Context:
    """A Context whose current span is the run span (for code that starts spans of its own)."""
    return identity(system, pipeline, run_id, upstream).run_context()


def current_carrier() -> dict[str, str]:
    """The current context as a carrier dict (for hand-offs)."""
    from .carriers import inject

    return inject({})


__all__ = [
    "batch_span", "current_carrier", "end_task_span", "identity", "link", "mark_result", "record_span",
    "run_context", "run_span", "start_task_span", "task_span", "to_ns",
]
