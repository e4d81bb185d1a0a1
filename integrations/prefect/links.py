"""Result hand-offs as span links: one per upstream run Prefect itself records in ``task_inputs``.

Prefect computes a task run's ``task_inputs`` (``collect_task_run_inputs``) from everything passed in:
futures, states, and plain values it recognises as another run's result (``join(orders(), customers())``),
including ``.map`` members, ``.submit`` calls, futures inside collections, ``wait_for`` and — on the
hidden task run that stands for a subflow in its parent flow — subflow parameters. Those entries name the
upstream task run (or flow run) by id; :func:`input_links` turns each into a link to the span of the
attempt that produced it:

- in this process, :func:`remember` noted every attempt's span as it started (the latest attempt of a
  finished run is the one whose result is consumed);
- otherwise (a process-pool worker, another machine) the upstream run is read back once through the
  client: a task run's final state carries the ``traceparent`` of the attempt that set it, a flow run's
  ``__OTEL_TRACEPARENT`` label its run span.

Entries whose producer has not started when the consumer starts (``.submit`` of still-running futures)
are resolved once the consumer is running. The ``__parents__`` entry (a task called inside another task)
is the span's parent, not a hand-off. Prefect's own links (consumed futures' states, native telemetry):
:func:`mark_result_links` drops those that repeat one of ours and those on flow-run spans, and gives
the rest ``pipetrace.link.kind=result``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Link, Span, SpanContext
from pipetrace import attributes as A
from pipetrace.adapter import OpenAttempts, warn_once_per

from .runs import LABEL, traceparent_context

log = logging.getLogger("pipetrace.prefect")

INPUT_NAME = "prefect.input.name"
UPSTREAM_RUN_ID = "prefect.input.run.id"
UPSTREAM_RUN_TYPE = "prefect.input.run.type"
PARENTS = "__parents__"
Entry = tuple[str, str, str]
"""``(input name, upstream run type, upstream run id)``"""

_spans: OpenAttempts[str, SpanContext] = OpenAttempts(50_000)
"""The latest attempt's span of each run started here (a few MB); older ones are read back when consumed."""


def remember(run_id: str, span: Span) -> None:
    """The span of a run's attempt that just started (a later attempt replaces an earlier one)."""
    sc = span.get_span_context()
    if sc.is_valid:
        _spans.put(run_id, sc)


def _entries(task_inputs: Any) -> Iterable[Entry]:
    """Each task_inputs entry that is a run, once."""
    seen: set[tuple[str, str]] = set()
    for name, inputs in (task_inputs or {}).items():
        if name == PARENTS:
            continue
        for item in inputs or ():
            kind = getattr(item, "input_type", None)
            if kind in ("task_run", "flow_run") and (str(name), str(item.id)) not in seen:
                seen.add((str(name), str(item.id)))
                yield str(name), kind, str(item.id)


def _read_back(client: Any, kind: str, run_id: str) -> SpanContext | None:
    """The producing span of a run this process did not see, from Prefect's own record of it."""
    sc = _spans.get(run_id)
    if sc is not None or client is None or not hasattr(client, "read_task_run"):
        return sc
    try:
        if kind == "task_run":
            state = getattr(client.read_task_run(run_id), "state", None)
            carrier = getattr(getattr(state, "state_details", None), "traceparent", None)
        else:
            carrier = (getattr(client.read_flow_run(run_id), "labels", None) or {}).get(LABEL)
        return traceparent_context(carrier, "prefect upstream run")
    except Exception as exc:
        warn_once_per(log, "prefect-input-read", "pipetrace: could not read upstream run %s: %r", run_id, exc)
        return None


def input_links(task_inputs: Any, client: Any = None, trace_id: int | None = None, *,
                defer: bool = False) -> tuple[list[Link], list[Entry]]:
    """One ``result`` link per upstream run entry of ``task_inputs`` (see the module doc); ``trace_id``:
    only targets in this trace (a consumed run of another trace is no hand-off inside this run).

    With ``defer``, entries whose run this process has not seen start are returned instead of read back:
    at a task run's start its upstream futures may not have started yet — :func:`resolve` them once the
    task is running (its inputs are resolved by then)."""
    try:
        entries = list(_entries(task_inputs))
        later = [e for e in entries if _spans.get(e[2]) is None] if defer else []
        return resolve([e for e in entries if e not in later], client, trace_id), later
    except Exception as exc:
        warn_once_per(log, "prefect-input-links", "pipetrace: could not link task inputs: %r", exc)
        return [], []


def resolve(entries: list[Entry], client: Any = None, trace_id: int | None = None) -> list[Link]:
    """Links for ``entries`` (those :func:`input_links` deferred, once their producers are known)."""
    out: list[Link] = []
    for name, kind, run_id in entries:
        sc = _read_back(client, kind, run_id)
        if sc is not None and (trace_id is None or sc.trace_id == trace_id):
            out.append(Link(sc, {A.LINK_KIND: "result", INPUT_NAME: name, UPSTREAM_RUN_ID: run_id,
                                 UPSTREAM_RUN_TYPE: kind}))
    return out


def mark_result_links(span: ReadableSpan) -> ReadableSpan:
    """Prefect spans: Prefect's own links (no kind) on a task span become ``result`` links unless one of
    ours already points at the same span; on a flow run span they are dropped."""
    attrs = span.attributes or {}
    if attrs.get(A.SYSTEM) != "prefect" or not span.links:
        return span
    if all(A.LINK_KIND in (lk.attributes or {}) for lk in span.links):
        return span
    # a flow run consumes data only as subflow parameters (linked from task_inputs); Prefect's own links
    # on it come from futures the flow resolved for a task (``.map`` over a future), not hand-offs to it
    run_span = A.TASK_NAME not in attrs
    ours = {(lk.context.trace_id, lk.context.span_id) for lk in span.links if A.LINK_KIND in (lk.attributes or {})}
    links: list[Link] = []
    for lk in span.links:
        if A.LINK_KIND in (lk.attributes or {}):
            links.append(lk)
        elif not run_span and (lk.context.trace_id, lk.context.span_id) not in ours:
            ours.add((lk.context.trace_id, lk.context.span_id))
            links.append(Link(lk.context, {**(lk.attributes or {}), A.LINK_KIND: "result"}))
    return ReadableSpan(
        name=span.name, context=span.context, parent=span.parent, resource=span.resource,
        attributes=span.attributes, events=span.events, links=links, kind=span.kind, status=span.status,
        start_time=span.start_time, end_time=span.end_time, instrumentation_scope=span.instrumentation_scope,
    )
