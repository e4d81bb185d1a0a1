"""DAG of DAGs: the parent triggers the child; pipetrace makes both runs one trace."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, task


@dag(dag_id="pt_trigger_child", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
     tags=["pipetrace"])
def pt_trigger_child():
    @task
    def child_work() -> str:
        return "done"

    child_work()


@dag(dag_id="pt_trigger_parent", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
     tags=["pipetrace"])
def pt_trigger_parent():
    @task
    def prepare() -> dict[str, str]:
        return {"batch": "2024-01-01"}

    prepare() >> TriggerDagRunOperator(
        task_id="trigger_child", trigger_dag_id="pt_trigger_child", conf={"source": "parent"},
    )


pt_trigger_child()
pt_trigger_parent()
