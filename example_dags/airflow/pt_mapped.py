"""Dynamic task mapping: one mapped instance per item, then a reduce over all of them."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="pt_mapped", schedule=None, start_date=datetime(2024, 1, 1), catchup=False, tags=["pipetrace"])
def pt_mapped():
    @task
    def list_files() -> list[str]:
        return ["a.csv", "b.csv", "c.csv"]

    @task
    def process(name: str) -> int:
        return len(name)

    @task
    def summarize(sizes: list[int]) -> int:
        return sum(sizes)

    summarize(process.expand(name=list_files()))


pt_mapped()
