"""Each example run in process (``materialize``/``execute_in_process``) → the exact span tree."""

from __future__ import annotations

import assets
import dynamic
import fan_in
import retry
from conftest import by_step, tree
from dagster import materialize
from pipetrace import attributes as A
from pipetrace.identity import RunIdentity


def _ident(job: str, run_id: str) -> RunIdentity:
    return RunIdentity("dagster", job, run_id)


def test_assets_with_dependencies(instrumented) -> None:
    result = materialize([assets.raw_orders, assets.cleaned_orders, assets.order_report])
    assert result.success
    job = "__ephemeral_asset_job__"
    spans = instrumented.spans(result.run_id)
    assert tree(spans, ("dagster.step_key", "dagster.asset_key")) == "\n".join([
        f"run {job}",
        "  task cleaned_orders dagster.step_key=cleaned_orders dagster.asset_key=cleaned_orders",
        "  task order_report dagster.step_key=order_report dagster.asset_key=order_report",
        "  task raw_orders dagster.step_key=raw_orders dagster.asset_key=raw_orders",
    ])
    ident = _ident(job, result.run_id)
    run = next(s for s in spans if s.name == f"run {job}")
    assert run.trace_id == f"{ident.trace_id:032x}"
    assert run.span_id == f"{ident.run_span_id:016x}"
    assert run.parent_span_id is None
    assert run.kind == "SERVER"
    assert run.attributes[A.PIPELINE_RESULT] == "success"
    assert run.attributes["dagster.run_id"] == result.run_id
    steps = by_step(spans)
    for key in ("raw_orders", "cleaned_orders", "order_report"):
        span = steps[(key, 1)]
        assert span.span_id == f"{ident.task_span_id(key, None, 1):016x}"
        assert span.parent_span_id == run.span_id
        assert span.attributes[A.TASK_RESULT] == "success"
        assert span.attributes[A.SYSTEM] == "dagster"
        # the job and run id once, as cicd.pipeline.* (the run span also has them as dagster.*)
        assert (span.attributes[A.PIPELINE_NAME], span.attributes[A.PIPELINE_RUN_ID]) == (job, result.run_id)
        assert "dagster.job" not in span.attributes and "dagster.run_id" not in span.attributes
        assert span.attributes["dagster.op"] == key
        assert run.start_ns <= span.start_ns <= span.end_ns <= run.end_ns
    assert steps[("raw_orders", 1)].links == []
    (lk,) = steps[("cleaned_orders", 1)].links
    assert lk["span_id"] == steps[("raw_orders", 1)].span_id
    assert lk["attributes"][A.LINK_KIND] == "asset"
    assert lk["attributes"]["dagster.asset_key"] == "raw_orders"
    (lk,) = steps[("order_report", 1)].links
    assert (lk["span_id"], lk["attributes"][A.LINK_KIND]) == (steps[("cleaned_orders", 1)].span_id, "asset")


def test_partitioned_asset(instrumented) -> None:
    result = materialize([assets.raw_orders, assets.cleaned_orders, assets.daily_sales], partition_key="us",
                         selection=[assets.daily_sales])
    assert result.success
    spans = instrumented.spans(result.run_id)
    assert tree(spans, ("dagster.asset_key", "dagster.partition_key")) == "\n".join([
        "run __ephemeral_asset_job__ dagster.partition_key=us",
        "  task daily_sales dagster.asset_key=daily_sales dagster.partition_key=us",
    ])


def test_fan_in_job(instrumented) -> None:
    result = fan_in.fan_in_job.execute_in_process()
    assert result.success
    spans = instrumented.spans(result.run_id)
    assert tree(spans) == "\n".join([
        "run fan_in_job",
        "  task combine dagster.step_key=combine",
        "  task extract_a dagster.step_key=extract_a",
        "  task extract_b dagster.step_key=extract_b",
        "  task extract_c dagster.step_key=extract_c",
        "  task publish dagster.step_key=publish",
    ])
    steps = by_step(spans)
    links = steps[("combine", 1)].links
    assert sorted(lk["span_id"] for lk in links) == sorted(steps[(k, 1)].span_id
                                                           for k in ("extract_a", "extract_b", "extract_c"))
    assert {lk["attributes"][A.LINK_KIND] for lk in links} == {"result"}
    assert {lk["attributes"]["dagster.input"] for lk in links} == {"values"}
    # the linked span has its step key: a link carries only what it adds (kind, input, output)
    assert all(set(lk["attributes"]) == {A.LINK_KIND, "dagster.input", "dagster.output"} for lk in links)
    assert steps[("publish", 1)].links == []  # a Nothing dependency orders steps but hands over no data


def test_dynamic_fan_out_has_one_batch_span(instrumented) -> None:
    result = dynamic.dynamic_job.execute_in_process()
    assert result.success
    spans = instrumented.spans(result.run_id)
    assert tree(spans) == "\n".join([
        "run dynamic_job",
        "  batch process",
        "    task process dagster.step_key=process[alpha]",
        "    task process dagster.step_key=process[beta]",
        "    task process dagster.step_key=process[gamma]",
        "  task split dagster.step_key=split",
        "  task total dagster.step_key=total",
    ])
    ident = _ident("dynamic_job", result.run_id)
    batch = next(s for s in spans if s.name == "batch process")
    assert batch.span_id == f"{ident.batch_span_id('process'):016x}"
    assert batch.attributes[A.BATCH_SIZE] == 3
    assert batch.attributes[A.TASK_RESULT] == "success"
    steps = by_step(spans)
    mapped = [steps[(f"process[{k}]", 1)] for k in dynamic.CHUNKS]
    assert batch.start_ns <= min(s.start_ns for s in mapped)
    assert batch.end_ns >= max(s.end_ns for s in mapped)
    for span, key in zip(mapped, dynamic.CHUNKS, strict=True):
        assert span.attributes["dagster.mapping_key"] == key
        assert span.attributes[A.TASK_NAME] == "process"
        ((lk),) = span.links
        assert lk["span_id"] == steps[("split", 1)].span_id
    assert sorted(lk["span_id"] for lk in steps[("total", 1)].links) == sorted(s.span_id for s in mapped)


def test_step_fails_then_succeeds_on_retry(instrumented) -> None:
    result = retry.retry_job.execute_in_process()
    assert result.success
    assert result.output_for_node("store") == 42
    spans = instrumented.spans(result.run_id)
    assert tree(spans, ("pipetrace.task.try_number", "cicd.pipeline.task.run.result")) == "\n".join([
        "run retry_job",
        "  task fetch pipetrace.task.try_number=1 cicd.pipeline.task.run.result=success",
        "  task flaky pipetrace.task.try_number=1 cicd.pipeline.task.run.result=retry",
        "  task flaky pipetrace.task.try_number=2 cicd.pipeline.task.run.result=success",
        "  task store pipetrace.task.try_number=1 cicd.pipeline.task.run.result=success",
    ])
    ident = _ident("retry_job", result.run_id)
    steps = by_step(spans)
    first, second = steps[("flaky", 1)], steps[("flaky", 2)]
    assert first.span_id == f"{ident.task_span_id('flaky', None, 1):016x}"
    assert second.span_id == f"{ident.task_span_id('flaky', None, 2):016x}"
    assert first.status == "ERROR"
    assert first.attributes[A.ERROR_TYPE] == "FlakyError"
    (event,) = first.events
    assert event["name"] == "exception"
    assert "transient failure" in event["attributes"]["exception.message"]
    assert second.status != "ERROR"
    assert first.end_ns <= second.start_ns
    (lk,) = steps[("store", 1)].links
    assert lk["span_id"] == second.span_id  # the output came from the attempt that succeeded
