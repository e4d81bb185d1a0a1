"""Tasks that never run: a branch not taken (skipped) and a task downstream of a failure."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="pt_failures", schedule=None, start_date=datetime(2024, 1, 1), catchup=False, tags=["pipetrace"])
def pt_failures():
    @task.branch
    def choose() -> str:
        return "taken"

    @task
    def taken() -> str:
        return "yes"

    @task
    def not_taken() -> str:
        return "never"

    @task
    def broken() -> None:
        raise ValueError("bad input")

    @task
    def after_broken() -> str:
        return "never"

    choose() >> [taken(), not_taken()]
    broken() >> after_broken()


pt_failures()
