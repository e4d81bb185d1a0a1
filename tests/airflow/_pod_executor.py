"""An Airflow executor for fleet tests: each task instance runs like a Kubernetes pod on its own "host".

It launches what Airflow's containerised executors run in a pod (``python -m
airflow.sdk.execution_time.execute_workload --json-string …``) as a fresh process whose environment is
one host's: its own ``PIPETRACE_HOME`` and ``host.name``, taken round-robin from ``PT_FLEET_HOMES``
(paths joined with ``os.pathsep``). Everything else — scheduling, the execution API, XCom, state —
is the real Airflow's. Loaded by the scheduler with ``AIRFLOW__CORE__EXECUTOR=_pod_executor.PodExecutor``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.executors.base_executor import BaseExecutor

HOMES_ENV = "PT_FLEET_HOMES"


def host_env(home: Path, n: int) -> dict[str, str]:
    """A host's environment: the scheduler's, with that host's pipetrace home and host name."""
    env = dict(os.environ)
    env.update(PIPETRACE_HOME=str(home), OTEL_RESOURCE_ATTRIBUTES=f"host.name=fleet-host{n}")
    return env


class PodExecutor(BaseExecutor):
    """One process per task instance, on the fleet's homes in turn; exit code 0 is success."""

    def start(self) -> None:
        self.homes = [Path(p) for p in os.environ[HOMES_ENV].split(os.pathsep)]
        self.pods: dict[Any, subprocess.Popen[bytes]] = {}
        self.launched = 0

    def _process_workloads(self, workload_items: Sequence[Any]) -> None:
        for workload in workload_items:
            key = workload.key
            self.queued_tasks.pop(key, None)
            n = self.launched % len(self.homes)
            self.launched += 1
            home = self.homes[n]
            home.mkdir(parents=True, exist_ok=True)
            with open(home / f"pod-{self.launched}.log", "wb") as log:
                self.pods[key] = subprocess.Popen(
                    [sys.executable, "-m", "airflow.sdk.execution_time.execute_workload",
                     "--json-string", workload.model_dump_json()],
                    env=host_env(home, n), stdout=log, stderr=subprocess.STDOUT, cwd=home)
            self.running.add(key)

    def sync(self) -> None:
        for key, pod in list(self.pods.items()):
            code = pod.poll()
            if code is None:
                continue
            del self.pods[key]
            if code == 0:
                self.success(key)
            else:
                self.fail(key)

    def end(self) -> None:
        for pod in self.pods.values():
            pod.wait(60)
        self.sync()

    def terminate(self) -> None:
        for pod in self.pods.values():
            pod.kill()
