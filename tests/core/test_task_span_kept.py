"""``start_task_span`` with what a run's attempts share kept by the adapter (identity, parent, attributes
already clean) makes the same span as without."""

from __future__ import annotations

import pipetrace
from pipetrace import attributes as A
from pipetrace.carriers import span_context_of
from pipetrace.identity import RunIdentity

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _fields(span) -> tuple:  # noqa: ANN001
    return (span.name, span.trace_id, span.kind, span.start_ns, span.end_ns,
            sorted((k, v) for k, v in span.attributes.items() if k != A.PIPELINE_RUN_ID and k != A.TASK_RUN_ID))


def test_a_kept_identity_and_clean_attributes_give_the_same_span(traced) -> None:
    attrs = {"job": "etl", "assets": ["a", "b"], "rows": 3}
    plain = pipetrace.start_task_span("python", "etl", "r1", "load", try_number=2, attributes=attrs,
                                      upstream=TP, start_time=10.0)
    pipetrace.end_task_span(plain, end_time=11.0)
    ident = RunIdentity("python", "etl", "r2", span_context_of(TP))
    kept = pipetrace.start_task_span("python", "etl", "r2", "load", try_number=2, attributes=dict(attrs),
                                     ident=ident, parent=ident.run_context(), clean_attributes=True,
                                     start_time=10.0)
    pipetrace.end_task_span(kept, end_time=11.0)
    spans = {s.attributes[A.PIPELINE_RUN_ID]: s for s in traced.spans("0af7651916cd43dd8448eb211c80319c")}
    first, second = spans["r1"], spans["r2"]
    assert _fields(first) == _fields(second)
    assert second.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert second.span_id == f"{ident.task_span_id('load', None, 2):016x}"
    assert second.parent_span_id == f"{ident.run_span_id:016x}"
    assert second.attributes[A.TASK_RUN_ID] == "r2/load#2"
    assert second.attributes["assets"] == ["a", "b"]


def test_a_kept_identity_wins_over_the_upstream_argument(traced) -> None:
    ident = RunIdentity("python", "etl", "r3", span_context_of(TP))
    span = pipetrace.start_task_span("python", "etl", "r3", "load", ident=ident)  # no upstream passed
    pipetrace.end_task_span(span)
    (record,) = traced.spans("0af7651916cd43dd8448eb211c80319c")
    assert record.attributes[A.PIPELINE_RUN_ID] == "r3"
