"""Critical path on hand-built traces with known answers, and through the real span API and CLI."""

from __future__ import annotations

import json

import pipetrace
from analysis_helpers import T0, S, run, span, tid
from pipetrace import attributes as A
from pipetrace.analysis import critical_path
from pipetrace.cli import app
from pipetrace.store import SpanStore
from typer.testing import CliRunner


def steps(path):  # (label-ish, kind, start s, end s) relative to T0
    return [(s.span.name, s.kind, round((s.start_ns - T0) / S, 3), round((s.end_ns - T0) / S, 3)) for s in path.steps]


def test_fan_in_picks_the_slowest_branch_and_the_queue_wait() -> None:
    t = tid(1)
    spans = [
        run(t, 0, 30),
        span(t, "a", "1", "task a", 0, 10),
        span(t, "b", "1", "task b", 0, 15),
        span(t, "c", "1", "task c", 16, 30, attrs={A.QUEUED_MS: 500.0}),
    ]
    path = critical_path(spans)
    assert steps(path) == [
        ("task b", "self", 0.0, 15.0),
        ("task c", "wait", 15.0, 15.5),
        ("task c", "queue", 15.5, 16.0),
        ("task c", "self", 16.0, 30.0),
    ]
    assert path.steps[1].after is not None and path.steps[1].after.name == "task b"
    assert abs(sum(path.share(s) for s in path.steps) - 1.0) < 1e-9
    assert round(path.share(path.steps[0]), 3) == 0.5
    assert path.span_ids == ["0" * 15 + "1", "0" * 15 + "b", "0" * 15 + "c"]


def test_nested_children_and_parent_self_time() -> None:
    t = tid(2)
    spans = [
        run(t, 0, 20),
        span(t, "x", "1", "task x", 1, 19),
        span(t, "b1", "x", "batch x", 2, 8),
        span(t, "b2", "x", "batch x", 8, 17),
    ]
    path = critical_path(spans)
    assert steps(path) == [
        ("run p", "self", 0.0, 1.0), ("task x", "self", 1.0, 2.0), ("batch x", "self", 2.0, 8.0),
        ("batch x", "self", 8.0, 17.0), ("task x", "self", 17.0, 19.0), ("run p", "self", 19.0, 20.0),
    ]


def test_a_slow_link_is_followed_across_subtrees() -> None:
    """The consumer batch waited for data from task a (a link), not for its own task's earlier work:
    the path is a → hand-off gap → consumer batch, and task d's own early time is off the path."""
    t = tid(3)
    spans = [
        run(t, 0, 20),
        span(t, "a", "1", "task a", 0, 10),
        span(t, "d", "1", "task d", 0, 20),
        span(t, "d1", "d", "batch d", 0, 3),
        span(t, "c", "d", "batch d", 12, 20, links=["a"]),
    ]
    path = critical_path(spans)
    assert steps(path) == [
        ("task a", "self", 0.0, 10.0),
        ("batch d", "wait", 10.0, 12.0),
        ("batch d", "self", 12.0, 20.0),
    ]
    wait = path.steps[1]
    assert wait.after is not None and wait.after.name == "task a" and "(link)" in wait.label()
    assert "0" * 14 + "d1" not in path.span_ids


def test_link_wins_over_a_later_sibling() -> None:
    """c consumes a's output; b finished later but c did not need it."""
    t = tid(4)
    spans = [run(t, 0, 20), span(t, "a", "1", "task a", 0, 8), span(t, "b", "1", "task b", 0, 9),
             span(t, "c", "1", "task c", 10, 20, links=["a"])]
    assert [s[0] for s in steps(critical_path(spans))] == ["task a", "task c", "task c"]


def test_through_the_span_api_store_and_cli(traced, monkeypatch) -> None:
    system, pipe, run_id = "python", "etl", "run-42"
    ident = pipetrace.run_identity(system, pipe, run_id)
    t0 = T0
    extract = pipetrace.start_task_span(system, pipe, run_id, "extract", start_time=t0 + 1 * S)
    pipetrace.end_task_span(extract, end_time=t0 + 4 * S)
    load = pipetrace.start_task_span(system, pipe, run_id, "load", start_time=t0 + 1 * S)
    pipetrace.end_task_span(load, end_time=t0 + 2 * S)
    carrier = {"traceparent": f"00-{ident.trace_id:032x}-{extract.get_span_context().span_id:016x}-01"}
    transform = pipetrace.start_task_span(system, pipe, run_id, "transform", start_time=t0 + 6 * S,
                                          attributes={A.QUEUED_MS: 1000.0},
                                          links=[pipetrace.link(carrier, "xcom")])
    pipetrace.end_task_span(transform, end_time=t0 + 9 * S)
    pipetrace.run_span(system, pipe, run_id, start=t0, end=t0 + 10 * S, result="success")
    spans = traced.spans(run_id)
    assert len(spans) == 4
    path = critical_path(spans)
    names = [(s.span.name, s.kind) for s in path.steps]
    assert names == [("run etl", "self"), ("task extract", "self"), ("task transform", "wait"),
                     ("task transform", "queue"), ("task transform", "self"), ("run etl", "self")]
    shares = [round(path.share(s), 2) for s in path.steps]
    assert shares == [0.1, 0.3, 0.1, 0.1, 0.3, 0.1]

    monkeypatch.setenv("PIPETRACE_HOME", str(traced.home))
    result = CliRunner().invoke(app, ["critical-path", run_id, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [s["name"] for s in doc["steps"]][1] == "task extract"
    assert abs(sum(s["share"] for s in doc["steps"]) - 1) < 1e-6
    text = CliRunner().invoke(app, ["critical-path", run_id])
    assert text.exit_code == 0 and "queue wait before task transform" in text.output
    assert CliRunner().invoke(app, ["critical-path", "nope"]).exit_code == 1
    SpanStore(traced.home / "traces.db").close()
