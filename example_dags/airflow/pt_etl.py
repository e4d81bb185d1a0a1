"""ETL with fan-out and fan-in through XCom: extract → three transforms → load."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="pt_etl", schedule=None, start_date=datetime(2024, 1, 1), catchup=False, tags=["pipetrace"])
def pt_etl():
    @task
    def extract() -> list[int]:
        return [1, 2, 3, 4]

    @task
    def transform_sum(rows: list[int]) -> int:
        return sum(rows)

    @task
    def transform_max(rows: list[int]) -> int:
        return max(rows)

    @task
    def transform_count(rows: list[int]) -> int:
        return len(rows)

    @task
    def load(total: int, biggest: int, count: int) -> dict[str, int]:
        return {"total": total, "max": biggest, "count": count}

    rows = extract()
    load(transform_sum(rows), transform_max(rows), transform_count(rows))


pt_etl()
