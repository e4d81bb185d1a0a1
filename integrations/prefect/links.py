"""Result hand-offs as span links: one per upstream run Prefect itself records in ``task_inputs``.

Prefect's ``task_inputs`` name every upstream task run or flow run a run consumed (futures, states, values
it recognises as another run's result, ``.map`` members, ``wait_for``, and on the task run standing for a
subflow, its parameters). Each becomes a link to the producing attempt's span: remembered here when it
started, else read back through the client (a task run's final state carries its attempt's
``traceparent``, a flow run its ``__OTEL_TRACEPARENT`` label). Producers not started yet when the consumer
starts are resolved once it runs. ``__parents__`` (a task called in a task) is the parent, not a hand-off.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Link, SpanContext
from pipetrace import attributes as A
from pipetrace.adapter import warn_once_per
from pipetrace.adapter.handoffs import Producers
from pipetrace.carriers import span_context_of

from .runs import LABEL

log = logging.getLogger("pipetrace.prefect")

INPUT_NAME = "prefect.input.name"
UPSTREAM_RUN_ID = "prefect.input.run.id"
UPSTREAM_RUN_TYPE = "prefect.input.run.type"
PARENTS = "__parents__"
Entry = tuple[str, str, str]
"""``(input name, upstream run type, upstream run id)``"""

producers: Producers[str] = Producers(50_000)
"""The latest attempt's span of each run started here (a few MB); older ones are read back when consumed."""


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
    sc = producers.recall(run_id)
    if sc is not None or client is None or not hasattr(client, "read_task_run"):
        return sc
    try:
        if kind == "task_run":
            state = getattr(client.read_task_run(run_id), "state", None)
            carrier = getattr(getattr(state, "state_details", None), "traceparent", None)
        else:
            carrier = (getattr(client.read_flow_run(run_id), "labels", None) or {}).get(LABEL)
        return span_context_of(str(carrier), "prefect upstream run") if carrier else None
    except Exception as exc:
        warn_once_per(log, "prefect-input-read", "pipetrace: could not read upstream run %s: %r", run_id, exc)
        return None


def _link(entry: Entry, client: Any, trace_id: int | None) -> Link | None:
    """The ``result`` link to ``entry``'s producer, only if it is in ``trace_id`` (another trace's run is no
    hand-off inside this run)."""
    name, kind, run_id = entry
    sc = _read_back(client, kind, run_id)
    if sc is None or (trace_id is not None and sc.trace_id != trace_id):
        return None
    return Link(sc, {A.LINK_KIND: "result", INPUT_NAME: name, UPSTREAM_RUN_ID: run_id, UPSTREAM_RUN_TYPE: kind})


def input_links(task_inputs: Any, client: Any = None, trace_id: int | None = None,
                later: list[Entry] | None = None) -> list[Link]:
    """One ``result`` link per upstream run entry of ``task_inputs``; with ``later``, the entries whose run
    was not seen start here are kept there instead, for :func:`resolve` once the task runs."""
    out: list[Link] = []
    try:
        for entry in _entries(task_inputs):
            if later is not None and producers.recall(entry[2]) is None:
                later.append(entry)
            elif (lk := _link(entry, client, trace_id)) is not None:
                out.append(lk)
    except Exception as exc:
        warn_once_per(log, "prefect-input-links", "pipetrace: could not link task inputs: %r", exc)
    return out


def resolve(later: list[Entry], client: Any = None, trace_id: int | None = None) -> list[Link]:
    """Links for the entries :func:`input_links` deferred to ``later`` (their producers are known by now)."""
    entries, later[:] = list(later), []
    return [lk for entry in entries if (lk := _link(entry, client, trace_id)) is not None]


def mark_result_links(span: ReadableSpan) -> ReadableSpan:
    """Prefect's own links (no kind: consumed futures' states, native telemetry) on a task span become
    ``result`` links unless one of ours points at the same span; on a flow run span they are dropped (it
    consumes data only as subflow parameters, linked from task_inputs; Prefect's links there come from
    futures it resolved for a task)."""
    attrs = span.attributes or {}
    if attrs.get(A.SYSTEM) != "prefect" or all(A.LINK_KIND in (lk.attributes or {}) for lk in span.links):
        return span
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
