"""The Dagster part of the cross-system example: a small report job (fetch → two checks → publish).

The Celery worker launches it in process with the run tag ``traceparent``, so its run span is a child
of the Celery task span and its steps nest below it; each step links to the steps whose outputs it loaded.
"""

import time
from typing import Any

from dagster import In, OpExecutionContext, job, op

JOB_NAME = "cross_system_report"


@op(config_schema={"order_id": str, "rows": int})
def fetch(context: OpExecutionContext) -> list[int]:
    time.sleep(0.03)
    return list(range(context.op_config["rows"]))


@op
def validate(rows: list[int]) -> int:
    time.sleep(0.02)
    return sum(1 for r in rows if r >= 0)


@op
def enrich(rows: list[int]) -> int:
    time.sleep(0.04)
    return sum(rows)


@op(ins={"valid": In(int), "total": In(int)})
def publish(valid: int, total: int) -> dict[str, int]:
    time.sleep(0.01)
    return {"valid": valid, "total": total}


@job(name=JOB_NAME)
def cross_system_report() -> None:
    rows = fetch()
    publish(validate(rows), enrich(rows))


def run_config(order_id: str, rows: int) -> dict[str, Any]:
    quiet = {"console": {"config": {"log_level": "ERROR"}}}
    return {"ops": {"fetch": {"config": {"order_id": order_id, "rows": rows}}}, "loggers": quiet}
