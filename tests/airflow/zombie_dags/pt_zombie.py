"""Test-only DAG for test_zombie.py: one task that sleeps until it is killed, no retries."""

from __future__ import annotations

import time
from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="pt_zombie", schedule=None, start_date=datetime(2024, 1, 1), catchup=False, tags=["pipetrace"])
def pt_zombie():
    @task(retries=0)
    def sleeper() -> None:
        time.sleep(600)  # the test SIGKILLs this process long before

    sleeper()


pt_zombie()
