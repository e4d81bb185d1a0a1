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
from opentelemetry.trace import SpanKind
from pipetrace import attributes as A
from pipetrace import set_component
from pipetrace.adapter import deferred_span, warn_once_per
from pipetrace.adapter.messaging import tracer

from . import common as C
from . import interop
from .common import publishes

log = logging.getLogger("pipetrace.celery")


def _task_id(headers: Any, body: Any) -> str | None:
    if isinstance(headers, dict) and headers.get("id"):
        return str(headers["id"])
    if isinstance(body, dict) and body.get("id"):  # task protocol 1
        return str(body["id"])
    return None


def before_publish(sender: Any = None, body: Any = None, exchange: Any = None, routing_key: Any = None,
                   headers: Any = None, properties: Any = None, **_: Any) -> None:
    try:
        if headers is None or (interop.coexistence.may_defer and interop.deferring()):
            return
        task_id = _task_id(headers, body)
        if task_id is None:
            return
        name = str(sender or headers.get("task") or "unknown")
        dest = str(routing_key or getattr(exchange, "name", exchange) or "celery")
        root_id = str(headers.get("root_id") or task_id)
        context = otel_context.get_current()  # read once: the parent here and the baggage to inject
        pipeline, run_id = C.workflows.run_of_publish(headers, name, task_id, root_id, context)
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
        C.workflows.stamp(headers, span, now, context, name=name, root_id=root_id, pipeline=pipeline, run_id=run_id)
        publishes.begin(task_id, span)
    except Exception as exc:
        warn_once_per(log, "celery-before-publish", "pipetrace: celery publish not traced: %r", exc)


def after_publish(sender: Any = None, body: Any = None, headers: Any = None, **_: Any) -> None:
    try:
        publishes.end(_task_id(headers, body))
    except Exception as exc:
        warn_once_per(log, "celery-after-publish", "pipetrace: celery publish span not ended: %r", exc)


def publish_failed(headers: Any, exc: BaseException) -> None:
    """Called by the kombu wrapper when the broker refused a Celery message: end its span as failed."""
    try:
        publishes.fail(_task_id(headers, None), exc)
    except Exception:
        pass
