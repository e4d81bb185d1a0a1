"""Cross-system example: one trace across Airflow → Celery → Dagster, all in this process.

    python example_dags/cross_system/scenario.py        # prints the trace id; then: pipetrace show ID

An Airflow DAG run (``dag.test()``) has a task that publishes a Celery task; an in-process Celery worker
(solo pool, in a thread) runs it, and that task launches a Dagster job with the run tag ``traceparent``.
The chain of parents is: Airflow run → Airflow task ``hand_off`` → ``send`` (Celery publish) → Celery
task → Dagster run → Dagster steps; XCom and step-input hand-offs are span links.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Names the demo test asserts on (the exact parent chain of the trace).
AIRFLOW_DAG = "pt_cross_system"
AIRFLOW_TASK = "hand_off"
DAGSTER_JOB = "cross_system_report"


def _airflow_home() -> Path:
    """A throwaway Airflow home (SQLite) whose DAGs folder is this one: ``dag.test()`` serializes the DAG
    from the DAGs folder, and the example must not touch an Airflow database configured for real work."""
    home = Path(tempfile.mkdtemp(prefix="pipetrace-cross-system-"))
    os.environ.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(HERE),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    })
    return home


def run(say: Callable[[str], None] = print) -> str:
    """Run the scenario; the trace id (hex) of the Airflow run, which holds the whole chain."""
    if "airflow" in sys.modules:
        raise RuntimeError("run this scenario in a fresh process: Airflow was imported already, with its "
                           "configuration read from another AIRFLOW_HOME")
    home = _airflow_home()
    try:
        return _run(say)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _run(say: Callable[[str], None]) -> str:
    import pipetrace
    from broker import choose
    from celery.contrib.testing.worker import start_worker
    from pipetrace.integrations import celery as traced_celery
    from pipetrace.integrations import dagster as traced_dagster
    from pipetrace.integrations import kombu as traced_kombu

    pipetrace.get_tracer()
    traced_celery.instrument()
    traced_kombu.instrument()
    traced_dagster.instrument()

    broker = choose()
    say(f"broker: {broker.why}")
    os.environ["PIPETRACE_DEMO_BROKER_URL"] = broker.url  # read when worker_app builds its Celery app

    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db
    from worker_app import app

    db.initdb()
    dag = DagBag(dag_folder=str(HERE / "pt_cross_system.py")).dags[AIRFLOW_DAG]
    app.control.purge()  # a message left in the queue by an interrupted earlier run must not run now
    error: BaseException | None = None
    try:
        with start_worker(app, pool="solo", concurrency=1, perform_ping_check=False, loglevel="WARNING",
                          shutdown_timeout=15):
            try:
                dag_run = dag.test()
            except BaseException as exc:  # re-raised below: a slow worker stop must not hide it
                error = exc
    except RuntimeError:
        if error is None:
            raise
    if error is not None:
        raise error
    if dag_run.state != "success":
        raise RuntimeError(f"Airflow run {dag_run.run_id} ended {dag_run.state}")
    return f"{pipetrace.run_identity('airflow', dag_run.dag_id, dag_run.run_id).trace_id:032x}"


if str(HERE) not in sys.path:  # the DAG and the worker import their siblings by name
    sys.path.insert(0, str(HERE))

if __name__ == "__main__":
    trace_id = run()
    import pipetrace

    pipetrace.force_flush(10)
    print(trace_id)
