"""RunIdentity's span contexts and parent contexts: the trace-level values and the run's context are worked
out once per identity, and what they say is unchanged (upstream wins, else the derived trace, sampled)."""

import copy
import dataclasses
import pickle

import pytest
from opentelemetry import trace
from opentelemetry.trace import TraceFlags
from pipetrace import identity
from pipetrace.carriers import span_context_of
from pipetrace.identity import RunIdentity, derive_trace_id


def _not_again(*args: object) -> None:
    raise AssertionError("worked out again")


UPSTREAM = ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", "vendor=value")


def test_span_context_without_upstream_is_the_derived_sampled_trace() -> None:
    r = RunIdentity("dagster", "etl", "r1")
    sc = r.span_context(0x1234)
    assert (sc.trace_id, sc.span_id, sc.is_remote) == (derive_trace_id("dagster", "etl", "r1"), 0x1234, True)
    assert sc.trace_flags == TraceFlags.SAMPLED and len(sc.trace_state) == 0
    assert r.run_span_context().span_id == r.run_span_id


def test_span_context_carries_the_upstream_trace_flags_and_state() -> None:
    up = span_context_of({"traceparent": UPSTREAM[0], "tracestate": UPSTREAM[1]})
    assert up is not None
    r = RunIdentity("dagster", "etl", "r1", up)
    for _ in range(2):  # the second read comes from what the first worked out
        sc = r.span_context(0x99)
        assert (sc.trace_id, sc.span_id) == (up.trace_id, 0x99)
        assert sc.trace_flags == TraceFlags.DEFAULT and sc.trace_state.get("vendor") == "value"
        assert (r.trace_id, r.trace_flags, r.trace_state) == (up.trace_id, up.trace_flags, up.trace_state)


def test_trace_values_are_worked_out_once_per_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    r = RunIdentity("dagster", "etl", "r1")
    first, ctx = r.span_context(7), r.run_context()
    monkeypatch.setattr(identity, "derive_trace_id", _not_again)
    monkeypatch.setattr(identity, "_parent_context", _not_again)
    assert r.span_context(7) == first and r.trace_id == first.trace_id
    assert r.run_context() is ctx
    with pytest.raises(AssertionError):  # a new identity works them out (here: the patched function)
        RunIdentity("dagster", "etl", "r2").span_context(7)


def test_run_context_is_built_once_per_identity_and_parents_on_the_run_span() -> None:
    r = RunIdentity("dagster", "etl", "r1")
    ctx = r.run_context()
    assert r.run_context() is ctx
    parent = trace.get_current_span(ctx).get_span_context()
    assert (parent.trace_id, parent.span_id, parent.is_remote) == (r.trace_id, r.run_span_id, True)
    batch = trace.get_current_span(r.context_for(r.batch_span_id("map"))).get_span_context()
    assert (batch.trace_id, batch.span_id) == (r.trace_id, r.batch_span_id("map"))


def test_what_is_kept_leaves_the_identity_frozen_and_compared_by_its_fields() -> None:
    r = RunIdentity("dagster", "etl", "r1")
    r.run_context()
    r.span_context(1)
    assert r == RunIdentity("dagster", "etl", "r1") and hash(r) == hash(RunIdentity("dagster", "etl", "r1"))
    assert repr(r) == repr(RunIdentity("dagster", "etl", "r1"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.run_id = "r2"  # type: ignore[misc]
    other = dataclasses.replace(r, run_id="r2")  # a copy works its values out afresh
    assert other.trace_id == derive_trace_id("dagster", "etl", "r2") != r.trace_id
    assert trace.get_current_span(other.run_context()).get_span_context().span_id == other.run_span_id


def test_an_identity_that_kept_its_contexts_still_pickles_and_copies() -> None:
    r = RunIdentity("dagster", "etl", "r1")
    r.run_context()  # keeps an OTel Context, which cannot be unpickled
    for again in (pickle.loads(pickle.dumps(r)), copy.deepcopy(r), copy.copy(r)):
        assert again == r and again.trace_id == r.trace_id
        assert trace.get_current_span(again.run_context()).get_span_context().span_id == r.run_span_id
