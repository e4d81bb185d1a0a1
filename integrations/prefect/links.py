"""Result hand-offs as span links: one per upstream run Prefect itself records in ``task_inputs``.

Prefect's ``task_inputs`` name every upstream task run or flow run a run consumed (futures, states, values it
recognises as another run's result, ``.map`` members, ``wait_for``, and on the task run standing for a subflow,
its parameters). Each becomes a link to the producing attempt's span: remembered here when it started, else
read back through the client (a task run's final state carries its attempt's ``traceparent``, a flow run its
``__OTEL_TRACEPARENT`` label). Producers not started yet when the consumer starts are resolved once it runs.
``__parents__`` (a task called in a task) is the parent, not a hand-off."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Link, SpanContext
from pipetrace import attributes as A
from pipetrace.adapter import warn_once_per
from pipetrace.adapter.handoffs import Producers
from pipetrace.adapter.spans import with_links
from pipetrace.carriers import span_context_of

from .runs import LABEL

log = logging.getLogger("pipetrace.prefect")

PARENTS = "__parents__"
Entry = tuple[str, str, str]
"""``(input name, upstream run type, upstream run id)``"""

producers: Producers[str] = Producers(50_000)
"""The latest attempt's span of each run started here (a few MB); older ones are read back when consumed."""


def entries(task_inputs: Any) -> Iterable[Entry]:
    """Each task_inputs entry that is a run, once."""
    seen: set[tuple[str, str]] = set()
    for name, inputs in (task_inputs or {}).items():
        if name == PARENTS or not inputs:
            continue
        for item in inputs:
            kind = getattr(item, "input_type", None)
            if kind in ("task_run", "flow_run") and (key := (str(name), str(item.id))) not in seen:
                seen.add(key)
                yield key[0], kind, key[1]


def _read_back(client: Any, kind: str, run_id: str) -> SpanContext | None:
    """The producing span of a run this process did not see, from Prefect's own record of it."""
    if client is None or not hasattr(client, "read_task_run"):
        return None
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


def input_links(upstream: Iterable[Entry], client: Any = None, trace_id: int | None = None,
                later: list[Entry] | None = None) -> list[Link]:
    """One ``result`` link per upstream run (:func:`entries`) whose producer is in ``trace_id`` (another
    trace's run is no hand-off inside this run); with ``later``, the runs not seen start here are kept
    there instead, to link once the task runs (their producers are known by then)."""
    out: list[Link] = []
    try:
        for name, kind, run_id in upstream:
            sc = producers.recall(run_id)
            if sc is None and later is not None:
                later.append((name, kind, run_id))
            elif (sc := sc or _read_back(client, kind, run_id)) is not None and trace_id in (None, sc.trace_id):
                out.append(Link(sc, {A.LINK_KIND: "result", "prefect.input.name": name,
                                     "prefect.input.run.id": run_id, "prefect.input.run.type": kind}))
    except Exception as exc:
        warn_once_per(log, "prefect-input-links", "pipetrace: could not link task inputs: %r", exc)
    return out


def mark_result_links(span: ReadableSpan) -> ReadableSpan:
    """Prefect's own links (no kind: consumed futures' states, native telemetry) on a task span become
    ``result`` links unless one of ours points at the same span; on a flow run span they are dropped (it
    consumes data only as subflow parameters, linked from task_inputs; Prefect's links there come from
    futures it resolved for a task)."""
    attrs = span.attributes or {}
    if attrs.get(A.SYSTEM) != "prefect" or all(A.LINK_KIND in (lk.attributes or {}) for lk in span.links):
        return span
    ours = {(lk.context.trace_id, lk.context.span_id) for lk in span.links if A.LINK_KIND in (lk.attributes or {})}
    links: list[Link] = []
    for lk in span.links:
        key = (lk.context.trace_id, lk.context.span_id)
        if A.LINK_KIND in (lk.attributes or {}):
            links.append(lk)
        elif A.TASK_NAME in attrs and key not in ours:  # a task span (a flow run span: dropped)
            ours.add(key)
            links.append(Link(lk.context, {**(lk.attributes or {}), A.LINK_KIND: "result"}))
    return with_links(span, links)
