"""The Airflow part of the cross-system example: ``extract`` → ``hand_off`` → ``confirm``.

``hand_off`` publishes a Celery task (the Celery adapter adds the task span's ``traceparent`` to the
message) and waits for the Dagster run it starts; ``confirm`` reads the Dagster run id from XCom.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

DAG_ID = "pt_cross_system"


@dag(dag_id=DAG_ID, schedule=None, start_date=datetime(2024, 1, 1), catchup=False, tags=["pipetrace"])
def pt_cross_system():  # type: ignore[no-untyped-def]
    @task
    def extract() -> dict[str, object]:
        return {"order_id": "order-42", "rows": 25}

    @task
    def hand_off(order: dict[str, object]) -> str:
        from worker_app import run_report

        result = run_report.apply_async(args=[order["order_id"], order["rows"]])
        return str(result.get(timeout=90))

    @task
    def confirm(dagster_run_id: str) -> str:
        return f"report ready (dagster run {dagster_run_id})"

    confirm(hand_off(extract()))  # type: ignore[arg-type]  # TaskFlow passes XComArgs


pt_cross_system()
