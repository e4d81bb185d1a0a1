"""Run one example DAG through ``dag.test()`` in this process and print a JSON summary.

Used by the conftest (in-process) and by tests that need a fresh process (disabled mode, failure
injection): ``python _dagrun.py DAG_ID [CONF_JSON]`` with AIRFLOW_HOME etc. set by the caller.
"""

from __future__ import annotations

import json
import os
import sys
from functools import cache
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags" / "airflow"


def airflow_env(home: Path) -> dict[str, str]:
    """Environment for a throwaway Airflow home with the example DAGs and a SQLite metadata DB."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLES),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }


def init_db() -> None:
    from airflow.utils import db

    db.initdb()


@cache
def dags() -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    return dict(DagBag(dag_folder=str(EXAMPLES)).dags)


def xcoms(dag_id: str, run_id: str) -> dict[str, Any]:
    """Every XCom of the run as ``task[map_index]:key`` → deserialized value."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    out: dict[str, Any] = {}
    with create_session() as session:
        rows = session.query(XComModel).filter(XComModel.dag_id == dag_id, XComModel.run_id == run_id).all()
        for row in rows:
            value = row.value
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            out[f"{row.task_id}[{row.map_index}]:{row.key}"] = value
    return out


def run(dag_id: str, conf: dict[str, Any] | None = None) -> Any:
    return dags()[dag_id].test(run_conf=conf)


def main() -> None:
    if not os.environ.get("PT_TEST_DB_READY"):
        init_db()
    dag_id = sys.argv[1]
    conf = json.loads(sys.argv[2]) if len(sys.argv) > 2 else None
    dr = run(dag_id, conf)
    states = {f"{ti.task_id}[{ti.map_index}]": str(getattr(ti.state, "value", ti.state))
              for ti in dr.get_task_instances()}
    print("PIPETRACE-RESULT " + json.dumps({
        "state": str(getattr(dr.state, "value", dr.state)), "run_id": dr.run_id, "pid": os.getpid(),
        "run_seconds": (dr.end_date - dr.start_date).total_seconds(),
        "tasks": states, "xcoms": xcoms(dag_id, dr.run_id),
    }), flush=True)
    import pipetrace

    pipetrace.force_flush(10)


if __name__ == "__main__":
    main()
