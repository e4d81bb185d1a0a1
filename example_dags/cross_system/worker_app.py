"""The Celery part of the cross-system example: one task that runs the Dagster report job.

The worker runs in the same process as the Airflow DAG (``celery.contrib.testing.worker.start_worker``,
solo pool, in a thread). The task's span is the current span while it runs, so ``pipetrace.inject({})``
hands that context to Dagster as the run tag ``traceparent``.
"""

from __future__ import annotations

import os

from celery import Celery

QUEUE = os.environ.get("PIPETRACE_DEMO_QUEUE", "pipetrace_demo_cross")  # tests on a shared broker set their own
TASK = "cross_system.run_report"

app = Celery("cross_system", broker=os.environ.get("PIPETRACE_DEMO_BROKER_URL", "memory://"),
             backend="cache+memory://")  # the worker is in this process: an in-process result store is enough
app.conf.update(task_default_queue=QUEUE, worker_prefetch_multiplier=1, broker_connection_retry_on_startup=True,
                broker_connection_timeout=3, worker_hijack_root_logger=False, task_acks_late=False)


@app.task(name=TASK)
def run_report(order_id: str, rows: int) -> str:
    """Launch the Dagster report job for one order; the Dagster run id."""
    import pipetrace
    from report_job import cross_system_report, run_config

    result = cross_system_report.execute_in_process(run_config=run_config(order_id, rows),
                                                    tags=pipetrace.inject({}), raise_on_error=True)
    return result.run_id
