"""The Celery adapter's small shared pieces: the bounded pending map and header reads from every place
Celery keeps them (a task's request Context, a worker Request, nested headers)."""

from __future__ import annotations

from typing import Any

from celery.app.task import Context
from pipetrace.integrations.celery import headers as H
from pipetrace.integrations.celery.state import Pending

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
