"""Canvas, retries, failures, countdown, unknown tasks: exact span trees from the store, real workers."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pytest
from conftest import spans_of
from pipetrace.integrations.celery.common import attempt_span_id

PUBLISH_KEYS = {"messaging.system", "messaging.destination.name", "messaging.operation.type",
                "messaging.message.id", "cicd.pipeline.task.name"}


def index(spans: list[Any]) -> tuple[dict[str, Any], dict[str, list[Any]], dict[str, list[Any]]]:
    by_id = {s.span_id: s for s in spans}
    children: dict[str, list[Any]] = defaultdict(list)
    for s in spans:
        children[s.parent_span_id or ""].append(s)
    attempts: dict[str, list[Any]] = defaultdict(list)
    for s in spans:
        if s.name.startswith("task "):
            attempts[s.attributes["cicd.pipeline.task.run.id"]].append(s)
    for v in attempts.values():
        v.sort(key=lambda s: s.attributes["pipetrace.task.try_number"])
    return by_id, children, attempts


def publish_of(task_span: Any, by_id: dict[str, Any]) -> Any:
    parent = by_id[task_span.parent_span_id]
    assert parent.name.startswith("send ") and parent.kind == "PRODUCER"
    assert parent.attributes["messaging.message.id"] == task_span.attributes["cicd.pipeline.task.run.id"]
    return parent


@pytest.mark.parametrize("kind", ["rabbitmq", "redis"])
def test_workflows_make_exact_trees(worker_factory: Any, kind: str) -> None:
    # On Redis every child is recycled after one task: no span may be lost when a child exits.
    extra = ["--max-tasks-per-child=1"] if kind == "redis" else []
    w = worker_factory(kind, extra=extra)
    ids = w.produce("all")
    w.stop()  # warm shutdown flushes every process
    spans = spans_of(w.home)
    by_id, children, attempts = index(spans)
    system = "rabbitmq" if kind == "rabbitmq" else "redis"
    assert ids["chain"]["value"] == 13 and ids["chord"]["value"] == 15 and ids["flaky"]["value"] == 7

    # chain of 3: one trace, each link published from inside the previous task's span
    a, b, c = (attempts[i][0] for i in ids["chain"]["ids"])
    assert len({a.trace_id, b.trace_id, c.trace_id}) == 1
    root_send = publish_of(a, by_id)
    assert root_send.parent_span_id is None
    assert by_id[publish_of(b, by_id).parent_span_id] is a
    assert by_id[publish_of(c, by_id).parent_span_id] is b
    for s in (a, b, c):
        assert s.kind == "CONSUMER" and s.attributes["cicd.pipeline.task.run.result"] == "success"
        assert s.attributes["cicd.pipeline.name"] == "pipeline_app.add"
        assert s.attributes["cicd.pipeline.run.id"] == ids["chain"]["ids"][0]
        assert s.attributes["messaging.system"] == system
        assert s.attributes["pipetrace.task.queued_ms"] >= 0
        # no value twice (issue 24): the task id is cicd.pipeline.task.run.id only, "process" is the operation
        # type only, and celery.state appears only where the result does not already say it
        assert not {"messaging.message.id", "messaging.operation.name", "celery.state"} & set(s.attributes)
        assert s.attributes["messaging.operation.type"] == "process"
    assert PUBLISH_KEYS <= set(root_send.attributes)
    assert len([x for x in spans if x.trace_id == a.trace_id and not x.is_run]) == 6

    # group of 5: one batch span parenting the 5 publishes, each parenting its task
    members = [attempts[i][0] for i in ids["group"]["ids"]]
    sends = [publish_of(m, by_id) for m in members]
    batch = by_id[sends[0].parent_span_id]
    assert batch.name == "batch group" and batch.attributes["pipetrace.batch.size"] == 5
    assert batch.parent_span_id is None
    assert {by_id[s.parent_span_id].span_id for s in sends} == {batch.span_id}
    assert sorted(m.attributes["pipetrace.task.map_index"] for m in members) == [0, 1, 2, 3, 4]
    assert len([x for x in spans if x.trace_id == batch.trace_id and not x.is_run]) == 11

    # chord 5 -> 1: header batch span, body links to every header task
    header = [attempts[i][0] for i in ids["chord"]["header"]]
    cbatch = by_id[publish_of(header[0], by_id).parent_span_id]
    assert cbatch.name == "batch chord" and cbatch.attributes["pipetrace.batch.size"] == 5
    assert {by_id[publish_of(h, by_id).parent_span_id].span_id for h in header} == {cbatch.span_id}
    (body,) = attempts[ids["chord"]["body"]]
    assert body.trace_id == cbatch.trace_id
    assert by_id[publish_of(body, by_id).parent_span_id] in header  # published by the last header task
    assert {lk["span_id"] for lk in body.links} == {h.span_id for h in header}
    assert all(lk["attributes"]["pipetrace.link.kind"] == "result" for lk in body.links)
    assert len([x for x in spans if x.trace_id == cbatch.trace_id and not x.is_run]) == 13

    # retried twice then successful: three attempt spans, each published by the previous one
    tries = attempts[ids["flaky"]["id"]]
    assert [t.attributes["pipetrace.task.try_number"] for t in tries] == [1, 2, 3]
    assert [t.attributes["cicd.pipeline.task.run.result"] for t in tries] == ["retry", "retry", "success"]
    assert by_id[publish_of(tries[1], by_id).parent_span_id] is tries[0]
    assert by_id[publish_of(tries[2], by_id).parent_span_id] is tries[1]
    assert all(t.span_id == f"{attempt_span_id(ids['flaky']['id'], n + 1):016x}" for n, t in enumerate(tries))
    assert any(e["name"] == "celery.retry" for e in tries[0].events)

    # failing task: exception recorded, status ERROR
    (boom,) = attempts[ids["boom"]["id"]]
    assert boom.status == "ERROR" and boom.attributes["error.type"] == "ValueError"
    assert boom.attributes["cicd.pipeline.task.run.result"] == "failure"
    assert any(e["name"] == "exception" for e in boom.events)

    # expected exception (Task.throws): recorded, not an error
    (exp,) = attempts[ids["expected"]["id"]]
    assert exp.status == "UNSET" and exp.attributes["pipetrace.celery.expected_error"] is True
    assert exp.attributes["cicd.pipeline.task.run.result"] == "failure"

    # countdown: honoured, and queue wait counted from the ETA, not from the publish 1 s earlier
    (cd,) = attempts[ids["countdown"]["id"]]
    waited_ms = (cd.start_ns - publish_of(cd, by_id).start_ns) / 1e6
    assert waited_ms >= 900 and 0 <= cd.attributes["pipetrace.task.queued_ms"] <= waited_ms
    if "celery.eta" in cd.attributes:
        assert cd.attributes["pipetrace.task.queued_ms"] <= waited_ms - 900, json.dumps(cd.attributes)

    # send_task to a name nobody registered: publish span ended, worker records the rejected message
    (unknown,) = attempts[ids["unknown"]["id"]]
    send = publish_of(unknown, by_id)
    assert send.end_ns >= send.start_ns and send.attributes["cicd.pipeline.task.name"] == "pipeline_app.not_registered"
    assert unknown.attributes["cicd.pipeline.task.run.result"] == "error" and unknown.status == "ERROR"

    # every span ended, spans from >= 2 worker processes, no orphan parents
    pids = {s.resource["process.pid"] for s in spans if s.name.startswith("task ")}
    assert len(pids) >= 2
    assert all(s.parent_span_id is None or s.parent_span_id in by_id for s in spans)
    assert not [s for s in spans if s.attributes.get("pipetrace.celery.publish_unconfirmed")]
    # service.name per component: the producer script and the worker (a publish from a task is the worker's)
    assert root_send.resource["service.name"] == "pipeline_app-producer"
    assert publish_of(b, by_id).resource["service.name"] == "pipeline_app-worker"
    assert {s.resource["service.name"] for s in (a, b, c)} == {"pipeline_app-worker"}


def test_revoked_task_is_recorded(worker_factory: Any) -> None:
    w = worker_factory("redis")
    ids = w.produce("revoke")
    w.stop()
    _, _, attempts = index(spans_of(w.home))
    (revoked,) = attempts[ids["revoked"]["id"]]
    assert revoked.attributes["cicd.pipeline.task.run.result"] == "cancellation"
    assert revoked.attributes["celery.revoked.reason"] == "revoked"
    assert revoked.parent_span_id is not None  # joined the producer's trace


def test_garbage_headers_from_untraced_producer(worker_factory: Any) -> None:
    w = worker_factory("redis")
    ids = w.produce("garbage", traced=False)
    assert ids["garbage"]["value"] == 3
    w.stop()
    spans = spans_of(w.home)
    _, _, attempts = index(spans)
    (task,) = attempts[ids["garbage"]["id"]]
    assert task.parent_span_id is None  # a new root
    assert task.attributes["cicd.pipeline.task.run.result"] == "success"
    assert "pipetrace.task.queued_ms" not in task.attributes
    (event,) = [e for e in task.events if e["name"] == "pipetrace.context.missing"]
    assert "traceparent" in event["attributes"]["pipetrace.context.reason"]
    assert "Traceback" not in w.log.read_text()
