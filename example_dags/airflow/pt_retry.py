"""A task that fails on its first try and succeeds on the retry."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, get_current_context, task


@dag(dag_id="pt_retry", schedule=None, start_date=datetime(2024, 1, 1), catchup=False, tags=["pipetrace"])
def pt_retry():
    @task(retries=1, retry_delay=timedelta(seconds=0))
    def flaky() -> str:
        if get_current_context()["ti"].try_number == 1:
            raise ConnectionError("source not ready yet")
        return "ok"

    @task
    def report(status: str) -> str:
        return f"flaky said {status}"

    report(flaky())


pt_retry()
