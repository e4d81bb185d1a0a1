"""Overhead of pipetrace on Airflow: a 50-task DAG through ``dag.test()``, with and without pipetrace,
alternating in one process. Prints the wall-time ratio and the added milliseconds per task.

    .venvs/airflow/bin/python benchmarks/airflow_overhead.py [--rounds 3]

The DAG: one source task whose XCom 48 parallel tasks read, and one sink reading all of them, so the
XCom-link path (carrier push + reads) is part of what is measured.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TASKS = 50


def _setup(home: Path) -> None:
    os.environ.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING", "PIPETRACE_HOME": str(home / "pt"),
    })
    (home / "dags").mkdir(parents=True, exist_ok=True)


DAG_SOURCE = f"""
from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="pt_bench_50", schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def bench():
    @task
    def source() -> int:
        return 1

    @task
    def work(x: int) -> int:
        return x + 1

    @task
    def sink(*values: int) -> int:
        return sum(values)

    s = source()
    sink(*[work.override(task_id=f"work_{{i}}")(s) for i in range({TASKS - 2})])


bench()
"""


def _dag(home: Path) -> Any:
    """dag.test() syncs the DAG from the dags folder, so the benchmark DAG lives in a file there."""
    from airflow.dag_processing.dagbag import DagBag

    path = home / "dags" / "pt_bench_50.py"
    path.write_text(DAG_SOURCE)
    return DagBag(dag_folder=str(path)).dags["pt_bench_50"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="pt-bench-airflow-"))
    _setup(home)
    from airflow.utils import db

    db.initdb()
    import pipetrace
    from pipetrace.integrations import airflow as adapter

    pipetrace.configure()
    bench = _dag(home)
    bench.test()  # warm-up: imports, DAG sync, first-use costs on both sides
    timings: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        for mode in ("off", "on"):
            (adapter.instrument if mode == "on" else adapter.uninstrument)()
            start = time.perf_counter()
            dr = bench.test()
            timings[mode].append(time.perf_counter() - start)
            assert str(getattr(dr.state, "value", dr.state)) == "success"
    adapter.instrument()
    pipetrace.force_flush(30)
    off, on = statistics.median(timings["off"]), statistics.median(timings["on"])
    print(f"airflow dag.test() of a {TASKS}-task DAG, {args.rounds} rounds, medians")
    print(f"  without pipetrace: {off:8.3f} s   {timings['off']}")
    print(f"  with pipetrace:    {on:8.3f} s   {timings['on']}")
    print(f"  ratio: {on / off:.3f}   added per task: {(on - off) / TASKS * 1000:+.2f} ms (goal: ratio <= 1.03)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
