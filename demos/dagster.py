"""Dagster's part of ``pipetrace demo``: a small job (fan-out with ``.map``, a retry, a fan-in) run
in process with tracing on; returns its trace id."""

from __future__ import annotations

import logging
import time

from pipetrace.integrations.dagster import instrument


def _job():  # type: ignore[no-untyped-def]
    from dagster import DynamicOut, DynamicOutput, RetryPolicy, job, op

    @op(out=DynamicOut())
    def extract():  # type: ignore[no-untyped-def]
        for name in ("north", "south", "east"):
            yield DynamicOutput(len(name), mapping_key=name)

    @op(retry_policy=RetryPolicy(max_retries=1))
    def transform(context, size: int) -> int:  # type: ignore[no-untyped-def]
        time.sleep(0.02)
        if context.retry_number == 0 and context.get_mapping_key() == "south":
            raise RuntimeError("demo: transient error, retried")
        return size * 2

    @op
    def load(values: list[int]) -> int:
        time.sleep(0.02)
        return sum(values)

    @job
    def demo_dagster_etl() -> None:
        load(extract().map(transform).collect())

    return demo_dagster_etl


def run() -> str:
    """Run the demo job in process; the trace id (hex) of its run."""
    from pipetrace.identity import RunIdentity

    instrument()
    job_def = _job()
    dagster_log = logging.getLogger("dagster")
    level = dagster_log.level
    dagster_log.setLevel(logging.ERROR)  # keep the demo's console output to pipetrace's own
    try:
        result = job_def.execute_in_process(raise_on_error=False)
    finally:
        dagster_log.setLevel(level)
    return f"{RunIdentity('dagster', job_def.name, result.run_id).trace_id:032x}"
