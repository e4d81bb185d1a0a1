"""Identity and attribute rules of the Celery adapter.

A Celery workflow (a task and everything it starts: chain links, group and chord members, retries)
is one pipeline run: run id = Celery's ``root_id``, pipeline = the first task's name (carried in the
``pipetrace_pipeline`` header). Every task attempt has a span id derived from its task id and try
number, so a chord body can link to the header tasks from their ids alone, and a span recorded after
the fact (revoked, rejected) and a live one for the same attempt are one span in the store.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from opentelemetry.trace import SpanKind
from pipetrace import attributes as A
from pipetrace.adapter import attempt_attributes, record_span
from pipetrace.adapter.messaging import base_attributes
from pipetrace.carriers import extract
from pipetrace.identity import RunIdentity, derive_task_span_id

from . import headers as H

SYSTEM = "celery"

_BROKERS = {"amqp": "rabbitmq", "pyamqp": "rabbitmq", "amqps": "rabbitmq", "librabbitmq": "rabbitmq",
            "redis": "redis", "rediss": "redis", "sentinel": "redis", "sqs": "aws_sqs", "memory": "memory",
            "filesystem": "filesystem"}
_system_cache: dict[int, str] = {}


def attempt_span_id(task_id: str, try_number: int) -> int:
    return derive_task_span_id(SYSTEM, SYSTEM, str(task_id), "attempt", None, int(try_number))


def task_name(task: Any, request: Any) -> str:
    """A task's name: the task's own, else the request's."""
    return str(getattr(task, "name", None) or getattr(request, "task", None) or "unknown")


def run_identity(root_id: str) -> RunIdentity:
    """Identity used for a workflow whose producer sent no trace context (derived trace id)."""
    return RunIdentity(SYSTEM, SYSTEM, str(root_id))


@functools.cache
def _app_getter() -> Any:
    from celery._state import get_current_app

    return get_current_app


def current_app() -> Any:
    """The current Celery app itself (not Celery's proxy): per-app caches key on it."""
    return _app_getter()()


def broker_system(app: Any) -> str:
    """``messaging.system`` from the app's broker URL scheme, cached per app."""
    key = id(app)
    cached = _system_cache.get(key)
    if cached is not None:
        return cached
    try:
        url = str(app.conf.broker_url or "amqp://")
        scheme = url.split("://", 1)[0].split("+")[0].lower()
    except Exception:
        scheme = "amqp"
    system = _BROKERS.get(scheme, scheme)
    _system_cache[key] = system
    return system


def shared_attributes(app: Any, operation: str, task: str, dest: str, routing_key: str | None
                      ) -> dict[str, Any]:
    """The attributes every ``send``/``process`` of ``task`` on ``dest`` has in common (messaging,
    system, task name), as a new dict that starts a span's."""
    return _shared_attributes(broker_system(app), operation, task, dest, routing_key).copy()


@functools.lru_cache(maxsize=4096)  # a handful of tasks and queues per process: built once each
def _shared_attributes(system: str, operation: str, task: str, dest: str, routing_key: str | None
                       ) -> MappingProxyType[str, Any]:
    attrs = base_attributes(system, dest, operation, routing_key=routing_key)
    if operation == "process":  # messaging.operation.name would repeat messaging.operation.type ("process")
        attrs.pop(A.MESSAGING_OPERATION_NAME, None)
    attrs[A.SYSTEM] = SYSTEM
    attrs[A.TASK_NAME] = task
    return MappingProxyType(attrs)  # read-only: copying a dict is cheaper than building one from pairs


def destination(delivery_info: Any, fallback: str = "celery") -> tuple[str, str | None]:
    """(destination name, routing key) from a request's delivery info."""
    info = delivery_info if isinstance(delivery_info, dict) else {}
    rk = info.get("routing_key")
    dest = rk or info.get("exchange") or fallback
    return str(dest), (str(rk) if rk is not None else None)


def record_attempt(name: str, task_id: str, values: Mapping[str, Any], try_number: int, root_id: Any, result: str,
                   attrs: Mapping[str, Any], *, messaging: Mapping[str, Any] | None = None, start: int | None = None,
                   span_id: int | None = None, error: BaseException | str | None = None) -> None:
    """An attempt span recorded after the fact, with the attempt's derived span id (unless ``span_id``):
    an attempt that never ran (revoked, rejected) or whose process died (``start``: when it began)."""
    root = H.run_id(values, str(root_id or task_id))
    now = time.time_ns()
    start = now if start is None else start
    base = dict(messaging or {})
    base.update(attempt_attributes(SYSTEM, H.pipeline(values, name), root, name, try_number, task_run_id=task_id))
    base.update(attrs)
    record_span(run_identity(root), span_id or attempt_span_id(task_id, try_number), f"task {name}", start=start,
                end=max(now, start), parent=extract(values, source=f"celery task {name}"), attributes=base,
                result=result, kind=SpanKind.CONSUMER, synthetic=True, error=error)
