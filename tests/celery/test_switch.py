"""The Celery adapter switched off and on again in a running process (``uninstrument()`` then
``instrument()``, what ``benchmarks/celery_toggle.py`` does between windows): no span and no header while
off, every span again once on, and a switch inside a task's own ``task_postrun`` leaves no attempt open.
In-process eager execution through Celery's real signals."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.signals import before_task_publish, task_postrun
from pipetrace.integrations.celery import common, instrument, is_instrumented, uninstrument


@pytest.fixture
def app(traced: Any) -> Iterator[Celery]:
    instrument()
    celery = Celery(f"pt-switch-{uuid.uuid4().hex[:6]}", broker="memory://", backend="cache+memory://")
    celery.conf.task_always_eager = True
    yield celery
    uninstrument()


def _task_spans(traced: Any) -> list[str]:
    return sorted(s.name for s in traced.spans() if s.name.startswith("task "))


def _publish_headers(task_id: str) -> dict[str, Any]:
    headers: dict[str, Any] = {"id": task_id, "task": "pt_switch_noop", "root_id": task_id}
    before_task_publish.send(sender="pt_switch_noop", body=((), {}, {}), routing_key="q", headers=headers)
    return headers


def test_off_then_on_again_traces_nothing_then_everything(app: Celery, traced: Any) -> None:
    @app.task(name="pt_switch_noop")
    def noop(n: int) -> int:
        return n

    noop.apply(args=(1,))
    uninstrument()
    assert not is_instrumented()
    noop.apply(args=(2,))
    assert "traceparent" not in _publish_headers("off-1")  # no receiver of the publish signal left
    instrument()
    assert is_instrumented()
    noop.apply(args=(3,))
    assert "traceparent" in _publish_headers("on-1")
    traced.flush()
    assert _task_spans(traced) == ["task pt_switch_noop", "task pt_switch_noop"]  # the first and the third


def test_switched_at_a_tasks_own_postrun_leaves_no_attempt_open(app: Celery, traced: Any) -> None:
    @app.task(name="pt_switch_turn")
    def turn(on: bool) -> bool:
        return on

    def switch(sender: Any = None, retval: Any = None, **_: Any) -> None:
        if getattr(sender, "name", None) == "pt_switch_turn":
            instrument() if retval else uninstrument()

    task_postrun.connect(switch, weak=False)  # after the adapter's own receiver, as the benchmark's
    try:
        turn.apply(args=(False,))  # traced: its span ends at this postrun, then the adapter goes off
        assert not is_instrumented()
        turn.apply(args=(True,))  # untraced: the adapter comes on at its postrun, too late to end anything
        assert is_instrumented()
        turn.apply(args=(False,))
    finally:
        task_postrun.disconnect(switch)
        instrument()
    traced.flush()
    assert _task_spans(traced) == ["task pt_switch_turn", "task pt_switch_turn"]
    assert len(common.attempts) == 0
