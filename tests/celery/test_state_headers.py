"""The Celery adapter's small shared pieces: the bounded pending map and header reads from every place
Celery keeps them (a task's request Context, a worker Request, nested headers)."""

from __future__ import annotations

from typing import Any

from celery.app.task import Context
from pipetrace.adapter import OpenAttempts as Pending
from pipetrace.integrations.celery import common as H

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
OTHER = "00-11111111111111111111111111111111-2222222222222222-01"


def test_pending_is_bounded_and_evicts_the_oldest_first() -> None:
    pending = Pending(bound=3)
    assert pending.put("a", 1) == [] and pending.put("b", 2) == [] and pending.put("c", 3) == []
    assert pending.put("a", 10) == []  # a key put again moves to the end
    assert pending.put("d", 4) == [2]  # "b" is now the oldest
    assert pending.put("e", 5) == [3]
    assert len(pending) == 3
    assert pending.pop("a") == 10 and pending.pop("a") is None
    assert pending.get("d") == 4


def test_read_from_a_task_request_context_top_level_first() -> None:
    ctx = Context({"id": "t1", "traceparent": TP, "pipetrace_pipeline": "etl",
                   "headers": {"traceparent": OTHER, "pipetrace_chord_header": "x,y"}})
    values = H.read(ctx)
    assert values["traceparent"] == TP  # the top level wins
    assert values["pipetrace_pipeline"] == "etl"
    assert values["pipetrace_chord_header"] == "x,y"  # what only the nested headers hold is still read


def test_read_nested_headers_only_celery_4875() -> None:
    ctx = Context({"id": "t2", "headers": {"traceparent": TP, "pipetrace-published-ns": "123"}})
    assert H.read(ctx) == {"traceparent": TP, "pipetrace-published-ns": "123"}


class _WorkerRequest:
    """Shaped like celery.worker.request.Request: the message in ``request_dict``."""

    def __init__(self, request_dict: dict[str, Any]) -> None:
        self._request_dict = request_dict

    @property
    def request_dict(self) -> dict[str, Any]:
        return self._request_dict

    headers = None


def test_read_from_a_worker_request_and_from_a_mapping() -> None:
    assert H.read(_WorkerRequest({"traceparent": TP, "other": 1})) == {"traceparent": TP}
    assert H.read({"traceparent": TP, "headers": {"tracestate": "a=b"}}) == {"traceparent": TP, "tracestate": "a=b"}
    assert H.read(object()) == {}


class _ContextLike:
    """Not a Celery Context: read() takes its general path for it."""

    headers = None

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def test_the_task_context_shortcut_reads_what_the_general_path_reads() -> None:
    shapes: list[dict[str, Any]] = [
        {"id": "a", "traceparent": TP},
        {"id": "b", "headers": {"traceparent": TP, "headers": {"tracestate": "k=v", "traceparent": OTHER}}},
        {"id": "c", "traceparent": TP, "headers": {"traceparent": OTHER, "pipetrace_pipeline": "p"}},
        {"id": "d", "headers": "not a mapping"},
        {"id": "e", "headers": {"headers": {"pipetrace_chord_header": "x"}}},
        {"id": "f"},
    ]
    for values in shapes:
        assert H.read(Context(dict(values))) == H.read(_ContextLike(dict(values))), values


def _published(headers: dict[str, Any], sender: str = "app.first") -> dict[str, Any]:
    from pipetrace.integrations.celery import publish

    publish.before_publish(sender=sender, body=((), {}, {}), routing_key="q", headers=headers)
    publish.after_publish(sender=sender, body=((), {}, {}), headers=headers)
    return headers


def test_a_workflows_first_task_is_sent_without_a_pipeline_header(traced: Any) -> None:
    """The worker takes the task's own name when the header is absent: the header would only repeat it."""
    headers = _published({"id": "t1", "task": "app.first", "root_id": "t1"})
    assert headers["traceparent"].startswith("00-") and "pipetrace-published-ns" in headers
    assert H.PIPELINE_HEADER not in headers
    assert H.pipeline(H.read(headers), "app.first") == "app.first"
    (span,) = traced.spans()
    assert span.name == "send q" and span.attributes["cicd.pipeline.name"] == "app.first"


def test_a_later_task_of_a_workflow_carries_the_workflows_pipeline(traced: Any) -> None:
    headers = _published({"id": "t2", "task": "app.second", "root_id": "t1", "pipetrace_pipeline": "app.first"},
                         sender="app.second")
    assert headers[H.PIPELINE_HEADER] == "app.first"


def test_a_stale_pipeline_header_is_overwritten_even_when_it_is_the_tasks_own_name(traced: Any) -> None:
    # a re-sent message keeps its headers, nested ones included (celery#4875): the old name must not be read
    top = _published({"id": "t3", "task": "app.first", "root_id": "t3", "pipetrace_pipeline": "old"})
    assert top[H.PIPELINE_HEADER] == "app.first"
    nested = _published({"id": "t4", "task": "app.first", "root_id": "t4", "headers": {"pipetrace_pipeline": "old"}})
    assert nested["headers"][H.PIPELINE_HEADER] == "app.first"
    assert H.pipeline(H.read(nested), "x") == "app.first"


def test_shared_attributes_are_built_once_per_app_task_and_queue() -> None:
    from celery import Celery
    from pipetrace.integrations.celery.common import shared_attributes

    on_redis, on_rabbit = Celery("a", broker="redis://127.0.0.1:6379/0"), Celery("b", broker="amqp://h//")
    first = shared_attributes(on_redis, "send", "app.t", "q", "q")
    first["messaging.message.id"] = "mine"  # a new dict each time: the cached set is not changed
    again = shared_attributes(on_redis, "send", "app.t", "q", "q")
    assert again["messaging.system"] == "redis" and "messaging.message.id" not in again
    rabbit = shared_attributes(on_rabbit, "send", "app.t", "q", "q")
    assert rabbit["messaging.system"] == "rabbitmq" and rabbit["messaging.rabbitmq.destination.routing_key"] == "q"
    assert shared_attributes(on_redis, "process", "app.t", "other", None)["messaging.destination.name"] == "other"
