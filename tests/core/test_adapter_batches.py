"""The fan-out batch helpers of the adapter API: members claim their batch through the context a runner
copies, each fan-out of a task gets its own derived span, and the batch span is recorded at run end from
its members' times."""

from __future__ import annotations

import contextvars
import time
from concurrent.futures import ThreadPoolExecutor

from opentelemetry.context import Context
from pipetrace import attributes as A
from pipetrace.adapter import batches as fanout
from pipetrace.adapter.runs import Run
from pipetrace.identity import RunIdentity


def _submit_all(pool: ThreadPoolExecutor, batch: fanout.Batch, n: int) -> list[fanout.Member | None]:
    futures = []
    with fanout.mapping(batch):
        for _ in range(n):
            member = fanout.next_member()
            with fanout.submitting(member):  # the runner copies the context at submit time
                futures.append(pool.submit(contextvars.copy_context().run, fanout.take_member))
    return [f.result() for f in futures]


def test_members_claim_their_batch_in_submit_order(traced) -> None:  # noqa: ANN001
    run = Run(RunIdentity("test", "pipe", "r1"))
    batch = run.batches.open("t", Context())
    second = run.batches.open("t", Context())
    with ThreadPoolExecutor(2) as pool:
        members = _submit_all(pool, batch, 3)
    assert [(m.batch, m.map_index) for m in members if m is not None] == [(batch, 0), (batch, 1), (batch, 2)]
    assert batch.size == 3 and (batch.index, second.index) == (0, 1)
    assert batch.span_id == run.ident.batch_span_id("t", 0) != second.span_id
    assert batch.context() is run.ident.context_for(batch.span_id)
    assert fanout.take_member() is None  # outside a submit: no membership
    with fanout.mapping(batch):  # a member's own submits are not taken for the same batch
        assert fanout.take_member() is None and fanout.next_member() is None


def test_membership_crosses_processes_as_text() -> None:
    run = Run(RunIdentity("test", "pipe", "r1"))
    member = fanout.Member(run.batches.open("t", Context()), 4)
    carried = member.carrier()
    found = run.batches.member_from(carried, "t")
    assert found is not None and (found.batch.span_id, found.map_index) == (member.batch.span_id, 4)
    assert run.batches.member_from(carried, "other") is None
    assert Run(RunIdentity("test", "pipe", "r2")).batches.member_from(carried, "t") is None
    assert run.batches.member_from(None, "t") is None


def test_batch_span_recorded_from_its_members(traced) -> None:  # noqa: ANN001
    run = Run(RunIdentity("test", "pipe", "r3"))
    batch = run.batches.open("t", run.ident.run_context())
    batch.size = 2
    end = time.time_ns() + 10**9
    batch.member_ended(end)
    batch.member_ended(end - 10**6)
    run.batches.record_all(lambda b: {"test.task": b.task})
    run.batches.record_all()  # recorded once
    [span] = traced.spans(f"{run.ident.trace_id:032x}")
    assert span.name == "batch t" and span.span_id == f"{batch.span_id:016x}"
    assert span.parent_span_id == f"{run.ident.run_span_id:016x}"
    assert span.end_ns == end
    assert {k: span.attributes[k] for k in (A.BATCH_SIZE, A.BATCH_INDEX, A.PIPELINE_RUN_ID, "test.task")} == {
        A.BATCH_SIZE: 2, A.BATCH_INDEX: 0, A.PIPELINE_RUN_ID: "r3", "test.task": "t"}


def test_finished_fanouts_recorded_from_the_orchestrators_record(traced) -> None:  # noqa: ANN001
    ident = RunIdentity("test", "pipe", "r4")
    t0 = 1_700_000_000.0
    fanout.record_finished(ident, [
        fanout.Finished("a", t0 + 2, t0 + 5, False), fanout.Finished("a", t0 + 1, t0 + 3, True),
        fanout.Finished("a", None, None, False),  # a member that never ran counts, adds no times
        fanout.Finished("b", None, t0 + 7, False),  # no member started: the batch starts at its last end
    ], parent_span_id=ident.run_span_id, extra=lambda task: {"test.task": task})
    fanout.record_finished(ident, [fanout.Finished("c", None, None, False)], run_end=t0 + 9,
                           parent_span_id=ident.run_span_id)
    spans = {s.name: s for s in traced.spans(f"{ident.trace_id:032x}")}
    a, b, c = spans["batch a"], spans["batch b"], spans["batch c"]
    assert a.span_id == f"{ident.batch_span_id('a'):016x}" and a.parent_span_id == f"{ident.run_span_id:016x}"
    assert (a.start_ns, a.end_ns) == (int((t0 + 1) * 1e9), int((t0 + 5) * 1e9))
    assert a.attributes[A.BATCH_SIZE] == 3 and a.attributes["test.task"] == "a"
    assert a.attributes[A.TASK_RESULT] == A.RESULT_FAILURE and b.attributes[A.TASK_RESULT] == A.RESULT_SUCCESS
    assert a.attributes[A.PIPELINE_RUN_ID] == "r4" and A.SYNTHETIC not in a.attributes
    assert b.start_ns == b.end_ns == int((t0 + 7) * 1e9)
    assert c.start_ns == c.end_ns == int((t0 + 9) * 1e9)  # nothing started or ended: the run's end


def test_a_fanout_without_a_batch_hands_out_no_membership() -> None:
    with fanout.mapping(None):
        assert fanout.next_member() is None
        with fanout.submitting(fanout.next_member()):
            assert fanout.take_member() is None


def test_a_plain_submit_sets_nothing_up() -> None:
    """No member (a plain submit, the common case): nothing to set for the block, and no generator-based
    context manager is built and torn down per submit; a member is set for the block only."""
    from contextlib import nullcontext

    assert isinstance(fanout.submitting(None), nullcontext)
    run = Run(RunIdentity("test", "pipe", "r9"))
    member = fanout.Member(run.batches.open("t", run.ident.run_context()), 0)
    with fanout.submitting(member):
        with fanout.submitting(None):
            assert fanout.take_member() is member
    assert fanout.take_member() is None
