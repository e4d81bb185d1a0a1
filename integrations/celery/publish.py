"""Publish side: ``before_task_publish`` starts a ``send {queue}`` PRODUCER span and writes its context
into the message headers; ``after_task_publish`` ends it. Keyed by the task id in the headers, so a
``send_task`` to a task this process does not know is traced and ended like any other.

The send span is never current (nothing runs inside it), so it is a deferred span: ids and sampling at
the start, the record made at the end — the producer's per-publish cost is what throughput is most
sensitive to."""

from __future__ import annotations

import logging
import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pipetrace import attributes as A
from pipetrace import set_component
from pipetrace.adapter import deferred_span, end_with_error, warn_once_per
from pipetrace.adapter import headers as hdr
from pipetrace.adapter.messaging import tracer

from . import common as C
from . import interop
from .common import current, producer_runs, publishes

log = logging.getLogger("pipetrace.celery")

UNCONFIRMED = "pipetrace.celery.publish_unconfirmed"


def _producer_run(headers: Any, name: str, task_id: str, root_id: str, context: Any) -> tuple[str, str]:
    """(pipeline, run id) of a message published outside a task of its workflow: the run of the
    producer's current trace (a traced block, a group or chord being published) if it has one, else
    a run of its own named after the message (its ``root_id`` and task name)."""
    pipeline = C.pipeline(C.read(headers), name) if root_id != task_id else name
    sc = trace.get_current_span(context).get_span_context()
    if not sc.is_valid:
        return pipeline, C.run_id(C.read(headers), root_id) if C.RUN_HEADER in headers else root_id
    run_id, pipeline = producer_runs.claim(sc.trace_id, root_id, pipeline)
    return pipeline, run_id


def _task_id(headers: Any, body: Any) -> str | None:
    if isinstance(headers, dict) and headers.get("id"):
        return str(headers["id"])
    if isinstance(body, dict) and body.get("id"):  # task protocol 1
        return str(body["id"])
    return None


def before_publish(sender: Any = None, body: Any = None, exchange: Any = None, routing_key: Any = None,
                   headers: Any = None, properties: Any = None, **_: Any) -> None:
    try:
        if headers is None or (interop.may_defer and interop.deferring()):
            return
        task_id = _task_id(headers, body)
        if task_id is None:
            return
        name = str(sender or headers.get("task") or "unknown")
        dest = str(routing_key or getattr(exchange, "name", exchange) or "celery")
        running = current.get()
        root_id = str(headers.get("root_id") or task_id)
        context = otel_context.get_current()  # read once: the parent here and the baggage to inject
        if running is not None:  # published by a task: part of that task's run, whatever its root_id
            pipeline, run_id = running.pipeline, running.run_id
        else:
            pipeline, run_id = _producer_run(headers, name, task_id, root_id, context)
        app = C.current_app()
        set_component(f"{app.main or 'celery'}-producer", override=False)  # a worker stays the worker
        attrs = C.shared_attributes(app, "send", name, dest, str(routing_key) if routing_key is not None else None)
        attrs[A.MESSAGING_MESSAGE_ID] = task_id
        attrs[A.PIPELINE_NAME] = pipeline
        attrs[A.PIPELINE_RUN_ID] = run_id
        if headers.get("group"):
            attrs["celery.group_id"] = str(headers["group"])
        if headers.get("eta"):
            attrs["celery.eta"] = str(headers["eta"])  # the run closer waits for it (not due yet is not lost)
        now = time.time_ns()
        span = deferred_span(tracer(), f"send {dest}", kind=SpanKind.PRODUCER, attributes=attrs, start_time=now,
                             context=context, plain_attributes=True)
        carrier = hdr.stamp({}, span.get_span_context(), now, context)
        if pipeline != name or hdr.has(headers, C.PIPELINE_HEADER):  # the task's own name is what a worker assumes
            carrier[C.PIPELINE_HEADER] = pipeline
        if run_id != root_id or C.RUN_HEADER in headers:  # the root id is what a worker assumes
            carrier[C.RUN_HEADER] = run_id
        hdr.write(headers, carrier)
        for evicted in publishes.put(task_id, span):
            evicted.set_attribute(UNCONFIRMED, True)
            evicted.end()
    except Exception as exc:
        warn_once_per(log, "celery-before-publish", "pipetrace: celery publish not traced: %r", exc)


def after_publish(sender: Any = None, body: Any = None, headers: Any = None, **_: Any) -> None:
    try:
        task_id = _task_id(headers, body)
        span = publishes.pop(task_id) if task_id else None
        if span is not None:
            span.end()
    except Exception as exc:
        warn_once_per(log, "celery-after-publish", "pipetrace: celery publish span not ended: %r", exc)


def publish_failed(headers: Any, exc: BaseException) -> None:
    """Called by the kombu wrapper when the broker refused a Celery message: end its span as failed."""
    try:
        task_id = _task_id(headers, None)
        span = publishes.pop(task_id) if task_id else None
        if span is not None:
            live = span.live()
            end_with_error(live, exc)
            live.end()
    except Exception:
        pass
