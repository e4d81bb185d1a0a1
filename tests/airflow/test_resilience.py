"""Disabled mode and failure injection, each in a fresh process (the plugin reads its switches once):
tracing off or broken must leave task states and XComs exactly as they are without it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _dagrun import airflow_env
from pipetrace.store import SpanStore

HERE = Path(__file__).parent
EXPECTED_TASKS = {"extract[-1]": "success", "transform_sum[-1]": "success", "transform_max[-1]": "success",
                  "transform_count[-1]": "success", "load[-1]": "success"}


def _run(tmp_path: Path, env: dict[str, str], conf: dict[str, Any] | None = None) -> tuple[dict[str, Any], float]:
    """Run pt_etl with dag.test() in a fresh process; (summary, run duration in seconds)."""
    home = tmp_path / "airflow"
    home.mkdir()
    # a consistent copy of the session's migrated DB (WAL mode: use the backup API, not a file copy)
    with sqlite3.connect(_SESSION_DB) as src, sqlite3.connect(home / "airflow.db") as dst:
        src.backup(dst)
    full = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PIPETRACE", "OTEL_"))}
    full.update(airflow_env(home))
    full["PIPETRACE_HOME"] = str(tmp_path / "pt")
    full["PT_TEST_DB_READY"] = "1"
    full.update(env)
    args = [sys.executable, str(HERE / "_dagrun.py"), "pt_etl"] + ([json.dumps(conf)] if conf else [])
    out = subprocess.run(args, env=full, capture_output=True, text=True, timeout=180)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("PIPETRACE-RESULT ")), None)
    assert out.returncode == 0 and line, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(line.removeprefix("PIPETRACE-RESULT "))
    return result, float(result["run_seconds"])


def _user_xcoms(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result["xcoms"].items() if "__pipetrace" not in k}


_SESSION_DB = Path()


EXPECTED_XCOMS = {
    "extract[-1]:return_value": [1, 2, 3, 4], "transform_sum[-1]:return_value": 10,
    "transform_max[-1]:return_value": 4, "transform_count[-1]:return_value": 4,
    "load[-1]:return_value": {"total": 10, "max": 4, "count": 4},
    "load[-1]:total": 10, "load[-1]:max": 4, "load[-1]:count": 4,
}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory, airflow_db: Path) -> tuple[dict[str, Any], float, Path]:
    """The DAG with pipetrace disabled (``PIPETRACE_ENABLED=0``): the untraced reference run."""
    global _SESSION_DB
    _SESSION_DB = airflow_db / "airflow.db"
    tmp = tmp_path_factory.mktemp("baseline")
    return (*_run(tmp, {"PIPETRACE_ENABLED": "0"}), tmp)


def test_disabled_emits_nothing(baseline: tuple[dict[str, Any], float, Path]) -> None:
    result, _, tmp = baseline
    assert result["state"] == "success" and result["tasks"] == EXPECTED_TASKS
    assert result["xcoms"] == EXPECTED_XCOMS  # the same values as traced runs, and no trace-context XCom
    db = tmp / "pt" / "traces.db"
    assert not db.exists() or SpanStore(db).count() == 0


@pytest.mark.parametrize("case", ["store_unwritable", "exporter_down"])
def test_broken_pipetrace_never_breaks_tasks(tmp_path: Path, case: str,
                                             baseline: tuple[dict[str, Any], float, Path]) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store directory should be")
    env = {
        "store_unwritable": {"PIPETRACE_HOME": str(blocker / "pt")},
        # nothing listens on port 9: every export fails (connection refused) in the background
        "exporter_down": {"PIPETRACE_EXPORTERS": "store,otlp",
                          "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces",
                          "OTEL_EXPORTER_OTLP_TIMEOUT": "2"},
    }[case]
    result, elapsed = _run(tmp_path, env, conf={"traceparent": "\x00garbage"})
    assert result["state"] == "success" and result["tasks"] == EXPECTED_TASKS
    assert _user_xcoms(result) == baseline[0]["xcoms"]
    # not slowed: the DAG run takes about as long as untraced (generous bound: 2 shared CPU cores)
    assert elapsed < baseline[1] * 2 + 5, (elapsed, baseline[1])
