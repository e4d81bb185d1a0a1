"""``pipetrace demo`` part for Airflow: the ETL example DAG through ``dag.test()`` in this process.

Uses a throwaway Airflow home (SQLite) unless ``AIRFLOW_HOME`` is already set with a database."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pipetrace.identity import derive_trace_id
from pipetrace.integrations.airflow.runs import SYSTEM


def _examples() -> Path:
    return Path(__file__).resolve().parents[1] / "example_dags" / "airflow"


def run_demo() -> str | None:
    """Run the ``pt_etl`` example DAG and return its trace id (hex)."""
    if "AIRFLOW_HOME" not in os.environ:
        home = Path(tempfile.mkdtemp(prefix="pipetrace-airflow-demo-"))
        os.environ.update({
            "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(_examples()),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        })
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db

    db.initdb()
    dag = DagBag(dag_folder=str(_examples() / "pt_etl.py")).dags["pt_etl"]
    dr = dag.test()

    return f"{derive_trace_id(SYSTEM, dr.dag_id, dr.run_id):032x}"
