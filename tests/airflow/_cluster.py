"""A real Airflow deployment for one test session: scheduler + dag-processor + API server with the
LocalExecutor, metadata DB in a fresh PostgreSQL database. Every process it starts is in its own
process group and is killed (TERM, then KILL) on stop; the database is dropped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from _dagrun import EXAMPLES

PG = {"host": "127.0.0.1", "port": "5432", "user": "postgres"}
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self, root: Path, extra_env: dict[str, str] | None = None) -> None:
        self.root = root
        self.db = f"pt_airflow_{uuid.uuid4().hex[:10]}"
        self.port = _free_port()
        self.procs: list[subprocess.Popen[bytes]] = []
        home = root / "airflow"
        home.mkdir(parents=True, exist_ok=True)
        url = f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{self.db}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PIPETRACE", "OTEL_"))}
        self.env.update({
            "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLES),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__API__PORT": str(self.port), "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "PIPETRACE_HOME": str(root / "pt"), "PIPETRACE_EXPORT_INTERVAL": "0.2",
            "PYTHONUNBUFFERED": "1",
        })
        self.env.update(extra_env or {})

    # -- lifecycle -----------------------------------------------------------------------------
    def _run(self, *args: str, timeout: float = 120) -> str:
        out = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"{args} failed: {out.stdout[-2000:]}\n{out.stderr[-4000:]}")
        return out.stdout

    def start(self) -> None:
        self._run("createdb", "-h", PG["host"], "-U", PG["user"], self.db, timeout=30)
        self._run(str(BIN / "airflow"), "db", "migrate", timeout=180)
        for name, args in (("api-server", ["api-server", "--port", str(self.port), "--workers", "1"]),
                           ("scheduler", ["scheduler"]), ("dag-processor", ["dag-processor"])):
            log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
            self.procs.append(subprocess.Popen([str(BIN / "airflow"), *args], env=self.env, stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True))

    def stop(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 20
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:  # whatever is left of the group (task supervisors, uvicorn workers)
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
        subprocess.run(["dropdb", "-h", PG["host"], "-U", PG["user"], "--if-exists", "--force", self.db],
                       capture_output=True, timeout=60)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.root.glob("*.log"))

    # -- queries ------------------------------------------------------------------------------
    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        import psycopg2

        with psycopg2.connect(dbname=self.db, **PG) as conn, conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall())

    def wait_for(self, what: str, check: Any, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}\n{self.logs()}")
            try:
                value = check()
            except Exception:
                value = None
            if value:
                return value
            time.sleep(1)
        raise TimeoutError(f"timed out waiting for {what}\n{self.logs()}")

    def trigger(self, dag_id: str, run_id: str, conf: str) -> None:
        self.wait_for(f"{dag_id} parsed", lambda: self.sql(
            "select 1 from serialized_dag where dag_id = %s", dag_id), timeout=90)
        self._run(str(BIN / "airflow"), "dags", "trigger", dag_id, "--run-id", run_id, "--conf", conf,
                  timeout=90)

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 150) -> str:
        def done() -> str | None:
            rows = self.sql("select state from dag_run where dag_id = %s and run_id = %s", dag_id, run_id)
            return rows[0][0] if rows and rows[0][0] in ("success", "failed") else None

        return str(self.wait_for(f"run {run_id}", done, timeout))
